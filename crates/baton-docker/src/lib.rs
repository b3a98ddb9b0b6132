//! baton's Docker Engine backend: implements `baton_engine::runtime::Runtime` with bollard,
//! plus the Docker-only extras the CLI needs (logs, exec, stats, images).
