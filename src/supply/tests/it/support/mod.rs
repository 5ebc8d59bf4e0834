//! Builders that keep each test short, one concern per module: archives, a buildpack
//! dir with its manifest, a `supply` run and its outcome, a scripted HTTP server, a
//! test CA, a real proxy, mounts, and reading trees back.

mod archives;
mod buildpack;
mod files;
mod mount;
mod proxy;
mod server;
mod stage;
mod tls;

pub(crate) use archives::*;
pub(crate) use buildpack::*;
pub(crate) use files::*;
pub(crate) use mount::*;
pub(crate) use proxy::*;
pub(crate) use server::*;
pub(crate) use stage::*;
pub(crate) use tls::*;
