//! placeholder
#![allow(dead_code)]
mod command;
mod raft;
mod state;
