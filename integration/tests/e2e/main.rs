//! End-to-end tests: real `wharfd` and `wharf` processes (or the `wharf` library) over real QUIC on
//! 127.0.0.1, with temporary server roots. One binary, one module per area.

mod abuse;
mod accounts;
mod bad_senders;
mod batch;
mod copies;
mod eager;
mod faults;
mod habits;
mod hostile;
mod huge;
mod jail;
mod jail_race;
mod keys;
mod login;
mod lying_server;
mod metrics;
mod mirror;
mod navigation;
mod quota;
mod reconnect;
mod restarts;
mod resume;
mod scaleout;
mod scaleout_inline;
mod scaleout_recovery;
mod segments;
mod sessions;
mod setup_and_users;
mod shell;
mod soak;
mod transfers;
mod trust;
mod util;
mod walks;
mod wan;
