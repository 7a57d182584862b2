//! What a submit came to, in either mode: the one answer of the service
//! (`service::Service::submit`), which the HTTP layer only translates.

use quota_widget::core::wire::SubmitAccepted;

use crate::error::Refusal;

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
