//! The package's default build, without the tabs shell (cargo feature
//! `tabs` off): every tab connects by itself. `TabLink` has no values, so
//! the widget's tab paths are dead code the compiler drops, and the tabs
//! protocol (about 20 kB gzipped) stays out of the wasm.

use std::cell::RefCell;
use std::rc::Rc;

use web_sys::Document;

use crate::api::Inner;
use crate::core::{HoldEnd, Quota, SubmitError};
use crate::sync::{SyncEvent, SyncOptions};

pub enum TabLink {}

impl TabLink {
    pub fn submit(&mut self, _: &mut Quota, _: String, _: i64) -> Result<(), SubmitError> {
        match *self {}
    }
    pub fn end_hold(&mut self, _: &mut Quota, _: &str, _: HoldEnd, _: Option<String>, _: i64) {
        match *self {}
    }
    pub fn tick(&mut self, _: &mut Quota, _: i64) {
        match *self {}
    }
    pub fn server(&mut self, _: &mut Quota, _: SyncEvent, _: i64) -> Option<SyncEvent> {
        match *self {}
    }
    pub fn leave(&mut self, _: &mut Quota) {
        match *self {}
    }
}

/// Never joins: this build connects from every tab.
pub fn start(_: &Rc<RefCell<Inner>>, _: &Document, _: &SyncOptions, _: &str) -> bool {
    false
}

pub fn run(_: &Rc<RefCell<Inner>>) {}
