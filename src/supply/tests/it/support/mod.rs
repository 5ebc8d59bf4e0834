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

pub use archives::*;
pub use buildpack::*;
pub use files::*;
pub use mount::*;
pub use proxy::*;
pub use server::*;
pub use stage::*;
pub use tls::*;
