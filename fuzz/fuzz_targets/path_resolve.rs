//! Path resolution through the storage layer never leaves the home.
#![no_main]

use std::sync::LazyLock;

use wharf_integration::fuzzing::Jail;

static JAIL: LazyLock<Jail> = LazyLock::new(Jail::new);

libfuzzer_sys::fuzz_target!(|data: &[u8]| JAIL.check(data));
