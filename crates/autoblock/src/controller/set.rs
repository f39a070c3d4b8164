//! The `set` layout: table `inet autoblock` with timed hash sets (exact addresses) and
//! prefix sets, one base chain on the input hook, and one lookup rule per set.

use super::*;

fn pending() -> Error {
    Error::Conflict("the set layout is not available in this build yet; use --layout chain".into())
}

impl<T: Transport> Controller<T> {
    pub(super) fn set_init(&mut self) -> Result<(), Error> {
        Err(pending())
    }
    pub(super) fn set_block(&mut self, _entries: &[Entry]) -> Result<Report, Error> {
        Err(pending())
    }
    pub(super) fn set_unblock(&mut self, _nets: &[Net]) -> Result<Report, Error> {
        Err(pending())
    }
    pub(super) fn set_sync(&mut self, _desired: &[Entry]) -> Result<Report, Error> {
        Err(pending())
    }
    pub(super) fn set_list(&mut self) -> Result<Vec<Listed>, Error> {
        Err(pending())
    }
    pub(super) fn set_status(&mut self) -> Result<Vec<FamilyStatus>, Error> {
        Err(pending())
    }
    pub(super) fn set_flush(&mut self) -> Result<usize, Error> {
        Err(pending())
    }
    pub(super) fn set_remove(&mut self) -> Result<(), Error> {
        Err(pending())
    }
}
