//! baton state store
