//! The package's default build, without the tabs shell (cargo feature
//! `tabs` off): every tab connects by itself. `TabLink` has no values and
//! the session's peers are `core::Alone`, so the widget's tab paths are
//! dead code the compiler drops, and the tabs protocol (about 17 kB
//! gzipped) stays out of the wasm.

use js_sys::Function;
use web_sys::Document;

use crate::core::Alone;

/// The tabs' part of the session in this build: none.
pub type PeerPart = Alone;

pub use crate::tab_events::{Carried, TabEvent};

pub enum TabLink {}

pub fn visible(_: &Document) -> bool {
    true
}

impl TabLink {
    /// Never opens: this build connects from every tab.
    pub fn open(_: &Document, _: &str, _: &str, _: impl Fn(TabEvent) + 'static) -> Option<TabLink> {
        None
    }
    pub fn carry(&mut self, _: Alone) -> Carried {
        match *self {}
    }
    pub fn say_goodbye(&mut self, _: Alone) {
        match *self {}
    }
    pub fn close(&mut self) {
        match *self {}
    }
    pub fn reopen(&mut self) -> bool {
        match *self {}
    }
    pub fn drop_waiting(&mut self) -> Vec<Function> {
        match *self {}
    }
    pub fn wake_at(&mut self, _: i64, _: u32) {
        match *self {}
    }
    pub fn woke(&mut self) {
        match *self {}
    }
}

pub fn peers(link: &TabLink, _: String, _: bool) -> PeerPart {
    match *link {}
}
