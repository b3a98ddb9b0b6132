//! How the API refuses: a status and `{"error": "..."}`, from the control plane's and
//! the store's errors, in words that say what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_control::ControlError;
use baton_engine::runtime::RuntimeError;

/// An answer other than success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }

    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, m)
    }

    pub fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, m)
    }

    pub fn unprocessable(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)
    }

    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, m)
    }

    pub fn internal(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let status = match &e {
            ControlError::Refused(_) => StatusCode::CONFLICT,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Spec(_) | ControlError::Plan(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Runtime(RuntimeError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Runtime(RuntimeError::NotFound { .. }) => StatusCode::NOT_FOUND,
            ControlError::Runtime(RuntimeError::Conflict { .. } | RuntimeError::InUse { .. }) => {
                StatusCode::CONFLICT
            }
            ControlError::Runtime(_) => StatusCode::BAD_GATEWAY,
            ControlError::Pipeline(
                baton_pipeline::PipelineError::Spec(_)
                | baton_pipeline::PipelineError::Invalid(_)
                | baton_pipeline::PipelineError::Unsupported(_),
            ) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Vm(baton_vm::VmError::Unknown(_)) => StatusCode::NOT_FOUND,
            ControlError::Vm(
                baton_vm::VmError::NotRunning(_)
                | baton_vm::VmError::Running(_)
                | baton_vm::VmError::NotAllowed { .. },
            ) => StatusCode::CONFLICT,
            ControlError::Vm(baton_vm::VmError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::State(_)
            | ControlError::Apply(_)
            | ControlError::Io { .. }
            | ControlError::Pipeline(_)
            | ControlError::Vm(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<baton_state::StateError> for ApiError {
    fn from(e: baton_state::StateError) -> ApiError {
        ApiError::internal(e.to_string())
    }
}
