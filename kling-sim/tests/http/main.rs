//! The simulator through real HTTP on 127.0.0.1, as a client of the service
//! sees it. One binary with modules, so the suite links once.

mod auth;
mod callbacks;
mod common;
mod costs;
mod limits;
mod tasks;
