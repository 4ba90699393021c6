//! `opsctl force-unlock ID`: remove a state lock left behind by another run.

use crate::state::lock::force_unlock;

use super::{exit, UnlockArgs};

/// Runs `force-unlock`; returns the exit code.
pub fn run(args: UnlockArgs) -> i32 {
    match force_unlock(&args.state_dir, &args.id, args.force) {
        Ok((info, alive)) => {
            if alive {
                crate::errln!(
                    "warning: the holder (pid {}) is still running; a new apply may now run beside it",
                    info.pid
                );
            }
            crate::outln!("Lock {} released (was: {info}).", info.id);
            exit::OK
        }
        Err(e) => {
            crate::errln!("error: {e}");
            exit::ERROR
        }
    }
}
