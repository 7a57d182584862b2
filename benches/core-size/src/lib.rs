//! The widget's core with no shell, for `scripts/size --split`: the core
//! modules, the reader over JavaScript values, the Intl formatter and the
//! serde-wasm-bindgen writer are the widget's own files; each export below
//! hands one core entry its input and gives back what it returns, so that
//! every part of the core the widget uses is linked and nothing else.

#[path = "../../../src/core/mod.rs"]
pub mod core;
#[path = "../../../src/intl.rs"]
mod intl;
#[path = "../../../src/js.rs"]
mod js;
#[path = "../../../src/source.rs"]
mod source;

use wasm_bindgen::prelude::*;

use crate::core::link::{FetchResult, SyncInput, SyncMachine};
use crate::core::parse::read_state;
use crate::core::wire::ServerState;
use crate::core::{settle, Config, HoldEnd, Link, Memo, Msg, Quota, QuotaOptions, Reply, Session, Table, TabCmd, TabConfig, Tabs, Viewer};
use crate::intl::IntlFmt;
use crate::js::to_js;
use crate::source::json_parse;

#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

fn read_text(t: &str) -> Result<ServerState, String> {
    let v = json_parse(&JsValue::from_str(t)).map_err(|_| "not JSON".to_owned())?;
    read_state(&v).map_err(|e| e.to_string())
}

fn error(e: String) -> JsError {
    JsError::new(&e)
}

#[wasm_bindgen]
pub struct Core {
    session: Session<Tabs>,
    viewer: Viewer<Memo<IntlFmt>>,
    link: SyncMachine,
}

#[wasm_bindgen]
impl Core {
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, texts: Vec<String>) -> Result<Core, JsError> {
        let o = QuotaOptions::read(&options).map_err(error)?;
        let d = Config::default();
        let mut quota = Quota::new(Config { stale_after_ms: o.stale_after_ms.map_or(d.stale_after_ms, i64::from), ..d });
        quota.set_request(o.kind.as_deref().unwrap_or("image"), o.count.unwrap_or(1));
        quota.set_queue(o.queue == Some(true));
        let mut table = Table::default();
        if texts.len() == Msg::ALL.len() {
            table.add_all(texts);
        }
        let fmt = Memo::new(IntlFmt::new(o.locale.as_deref(), table));
        Ok(Core { session: Session::new(quota), viewer: Viewer::new(fmt), link: SyncMachine::new(true, 5000) })
    }
    pub fn join(&mut self, id: String) {
        self.session.join(Tabs::new(id, TabConfig::default(), true));
    }
    pub fn push(&mut self, state: JsValue, now: f64) -> Result<(), JsError> {
        let read = read_state(&state).map_err(|e| e.to_string());
        self.session.server_state(read, now as i64, &read_text).map_err(error)
    }
    pub fn receive(&mut self, msg: JsValue, now: f64) -> Result<(), JsError> {
        self.session.receive(&msg, now as i64, &read_text, self.viewer.fmt()).map_err(error)
    }
    pub fn view(&mut self, now: f64) -> JsValue {
        to_js(&self.viewer.view(&self.session.quota, now as i64))
    }
    pub fn said(&mut self) -> Vec<String> {
        self.session.quota.take_announcements(self.viewer.fmt())
    }
    pub fn submit(&mut self, id: String, now: f64) -> Result<u32, JsError> {
        self.session.submit(id, now as i64).map(|h| h.count).map_err(|e| error(e.message(self.viewer.fmt())))
    }
    pub fn end(&mut self, id: &str, end: u8, now: f64) -> bool {
        let end = [HoldEnd::Confirmed, HoldEnd::Refused, HoldEnd::Failed, HoldEnd::TimedOut][usize::from(end & 3)];
        self.session.end_hold(id, end, None, now as i64)
    }
    pub fn settle(&mut self, kind: &str, status: u16, retry_after: Option<String>, json: bool, code: Option<u32>) -> JsValue {
        let reply = Reply::Http { status, retry_after: retry_after.as_deref(), json, code };
        JsValue::from(settle(self.viewer.fmt(), kind, &reply).reason)
    }
    pub fn tick(&mut self, now: f64) -> f64 {
        self.session.tick(now as i64);
        self.session.next_deadline().map_or(-1.0, |d| d as f64)
    }
    pub fn lead(&mut self, now: f64) {
        self.session.lead(now as i64)
    }
    pub fn leave(&mut self) {
        self.session.leave()
    }
    pub fn visible(&mut self, visible: bool) {
        self.session.set_visible(visible)
    }
    pub fn link(&mut self, link: u8, now: f64) {
        self.session.server_link([Link::Live, Link::Paused, Link::Connecting][usize::from(link % 3)], now as i64)
    }
    pub fn current(&mut self, now: f64) {
        self.session.server_current(now as i64)
    }
    pub fn refused(&mut self, status: u16) -> String {
        self.session.server_refused(status, self.viewer.fmt())
    }
    /// The session's next command for the tabs.
    pub fn command(&mut self) -> JsValue {
        match self.session.next_cmd() {
            Some(TabCmd::Post(msg)) => to_js(&msg),
            Some(TabCmd::Send(hold)) => JsValue::from(hold.id),
            Some(TabCmd::Cancel { id, reason }) => JsValue::from(id + &reason),
            Some(TabCmd::Yield) => JsValue::TRUE,
            None => JsValue::NULL,
        }
    }
    /// One input of the connection's machine; how many commands it gave.
    pub fn connection(&mut self, input: u8, body: JsValue, random: f64) -> u32 {
        let input = match input {
            0 => SyncInput::Fetched { seq: 1, result: FetchResult::State { body, etag: None } },
            1 => SyncInput::StreamOpened,
            2 => SyncInput::StreamState(body),
            3 => SyncInput::StreamPing,
            4 => SyncInput::StreamFailed,
            5 => SyncInput::Timer,
            _ => SyncInput::Visible(input == 6),
        };
        self.link.handle(input, random).len() as u32
    }
}
