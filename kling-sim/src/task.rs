//! Generation tasks: their families, lifecycle states, fates and the views
//! the API and callbacks show of them.

use serde::{Deserialize, Serialize};

use crate::units::Units;

/// The reason given for a task refused by content moderation.
pub const MODERATION_MESSAGE: &str =
    "Failure to pass the risk control system: the content did not pass moderation";
/// The reason given for a task that failed for another cause.
pub const GENERATION_ERROR_MESSAGE: &str = "Generation failed: internal error, please try again";

/// The kind of work, which has its own parallel-slot limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Video,
}

/// A task family: each has its own create and query path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Images,
    Text2Video,
    Image2Video,
}

impl Family {
    pub fn kind(self) -> Kind {
        match self {
            Family::Images => Kind::Image,
            Family::Text2Video | Family::Image2Video => Kind::Video,
        }
    }

    /// The path under `/v1/` (also the family's name in the ledger).
    pub fn path(self) -> &'static str {
        match self {
            Family::Images => "images/generations",
            Family::Text2Video => "videos/text2video",
            Family::Image2Video => "videos/image2video",
        }
    }
}

/// `task_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Submitted,
    Processing,
    Succeed,
    Failed,
}

impl Status {
    /// Submitted or processing: holding slots and reserving units.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Submitted | Status::Processing)
    }
}

/// How a task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeed,
    Failed,
}

/// A task's fate, drawn (or scripted) when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    pub outcome: Outcome,
    /// `task_status_msg` on failure.
    pub reason: String,
    /// Milliseconds from creation to the end.
    pub duration_ms: u64,
}

/// What a task makes: the shape of its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Images { n: u32 },
    /// A video of `duration` seconds ("5" or "10").
    Video { duration: &'static str },
}

/// A task of the account.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub external_id: Option<String>,
    pub family: Family,
    pub output: Output,
    /// Parallel slots held while running: `n` for images, 1 for a video.
    pub slots: u32,
    /// Units charged on success.
    pub price: Units,
    pub status: Status,
    pub status_msg: String,
    /// Units actually deducted (on success).
    pub deducted: Units,
    pub created_at: u64,
    pub updated_at: u64,
    pub fate: Fate,
    pub callback_url: Option<String>,
}

impl Task {
    /// The answer to a query, and the body of a callback.
    pub fn view(&self) -> TaskView {
        let succeeded = self.status == Status::Succeed;
        TaskView {
            task_id: self.id.clone(),
            task_status: self.status,
            task_status_msg: self.status_msg.clone(),
            task_info: TaskInfo {
                external_task_id: self.external_id.clone(),
            },
            task_result: if succeeded { self.result() } else { TaskResult::default() },
            final_unit_deduction: succeeded.then_some(self.deducted),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The answer to a create.
    pub fn created_view(&self) -> CreatedView {
        CreatedView {
            task_id: self.id.clone(),
            task_status: self.status,
            task_info: TaskInfo {
                external_task_id: self.external_id.clone(),
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Made-up result addresses under `.invalid`, a domain that never
    /// resolves: nothing should try to download them.
    fn result(&self) -> TaskResult {
        match self.output {
            Output::Images { n } => TaskResult {
                images: Some(
                    (0..n)
                        .map(|index| ImageResult {
                            index,
                            url: format!("https://cdn.kling-sim.invalid/images/{}/{index}.png", self.id),
                        })
                        .collect(),
                ),
                videos: None,
            },
            Output::Video { duration } => TaskResult {
                images: None,
                videos: Some(vec![VideoResult {
                    id: format!("{}-v0", self.id),
                    url: format!("https://cdn.kling-sim.invalid/videos/{}/0.mp4", self.id),
                    duration: duration.to_owned(),
                }]),
            },
        }
    }
}

/// `task_info`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub external_task_id: Option<String>,
}

/// `task_result`: empty until success.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageResult>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub videos: Option<Vec<VideoResult>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub index: u32,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoResult {
    pub id: String,
    pub url: String,
    pub duration: String,
}

/// A task as a query answers it and a callback carries it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub task_status: Status,
    pub task_status_msg: String,
    pub task_info: TaskInfo,
    pub task_result: TaskResult,
    /// Present on success only, as a decimal string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_unit_deduction: Option<Units>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A task as a create answers it.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedView {
    pub task_id: String,
    pub task_status: Status,
    pub task_info: TaskInfo,
    pub created_at: u64,
    pub updated_at: u64,
}
