//! What a submit came to, in either mode: the one answer of the service
//! (`service::Service::submit`), which the HTTP layer only translates; and
//! why a callback of the upstream service was not taken.

use quota_widget::core::wire::SubmitAccepted;

use crate::error::{QuotaError, Refusal, StoreError};

#[derive(Debug)]
pub enum Submitted {
    /// Slots and units reserved (and in upstream mode the task created):
    /// 201, or 200 for a repeat of an accepted request id, for which the
    /// first answer is returned and nothing more is reserved.
    Accepted { accepted: SubmitAccepted, repeat: bool },
    /// A recorded refusal, local or the service's, with how long to wait
    /// before a retry when that is known.
    Refused { refusal: Refusal, retry_after_s: Option<u64> },
    /// The service could not take the task: failed, not charged.
    Failed { message: String },
}

/// Why a callback was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Not upstream mode, or a wrong secret.
    #[error("not found")]
    NotFound,
    /// A body that is not a task object.
    #[error("{0}")]
    Malformed(String),
    /// No task of this server has the id.
    #[error("no task of this server has that id")]
    UnknownTask,
    /// The service cannot be asked now; polling settles the task later.
    #[error("cannot confirm the task with the service now ({0}); it is polled")]
    Unconfirmed(String),
    /// The service does not say what the callback says.
    #[error("the service does not confirm that end: nothing changed")]
    Contradicted,
    #[error(transparent)]
    Quota(#[from] QuotaError),
}

impl From<StoreError> for CallbackError {
    fn from(e: StoreError) -> Self {
        CallbackError::Quota(e.into())
    }
}
