//! Integration tests: the real `config-server` binary (and the fixture Ruby
//! app) on free loopback ports. One test binary, one module per topic.

mod bindings;
mod cc_bindings;
mod door;
mod endpoints;
mod errors;
mod files;
mod hostile;
mod logging;
mod network;
mod port;
mod protocol;
mod races;
mod reads;
mod reload;
mod rubyapp;
mod shutdown;
mod sources;
mod support;
mod values;
mod wait;
