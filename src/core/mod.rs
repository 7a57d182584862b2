//! The quota rules (R1-R7 of the product) as a state machine that does no
//! I/O: server states, submits, outcomes and the clock go in as plain values,
//! and a [`ViewModel`] comes out. Nothing here knows about the browser, so it
//! runs and is property-tested on the host.

pub mod backoff;
pub mod fmt;
pub mod link;
pub mod machine;
pub mod options;
pub mod parse;
pub mod queue;
pub mod reconcile;
pub mod rules;
pub mod session;
pub mod submit;
pub mod tabs;
pub mod validate;
pub mod text;
pub mod view;
pub mod words;
pub mod wire;

pub use fmt::{Fmt, Memo, PlainFmt, Table};
pub use options::QuotaOptions;
pub use session::{Alone, Body, Peers, Session};
pub use machine::{Blocked, Config, Gate, Hold, HoldEnd, Link, Quota, SubmitError};
pub use submit::{settle, Reply, Settled, Verdict};
pub use tabs::{Why, SharedHold, Stamp, StateText, TabCmd, TabConfig, TabId, TabMsg, TabMsgError, Tabs};
pub use text::Msg;
pub use words::{kind_name, say};
pub use validate::StateError;
pub use view::{AttemptStatus, BlockedKind, AttemptView, CostView, MeterView, PackageView, UnitsView, ViewModel, Viewer};
