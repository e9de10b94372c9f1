//! The instance lifecycle, as on EC2.
//!
//! ```text
//!             start                 (delay)
//!   stopped ---------> pending ---------------> running
//!      ^                                          |
//!      |      (delay)                 stop        |
//!      +------------- stopping <------------------+
//!
//!   any state --terminate--> terminated (final)
//! ```
//!
//! Start on a running instance and stop on a stopped one are no-ops; stopping a pending
//! instance, or acting on a terminated one (other than terminate), is an incorrect state.

use cloud_api::InstanceState;

/// A lifecycle call a client can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Terminate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Terminate => "terminate",
        }
    }
}

/// What an action does to an instance in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Already there (or on the way): nothing changes.
    NoOp,
    /// Move to this state.
    To(InstanceState),
}

/// The action is not allowed in the instance's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} an instance that is {}", action.as_str(), state.as_str())]
pub struct IncorrectState {
    pub action: Action,
    pub state: InstanceState,
}

/// Applies `action` to an instance in `state`.
pub fn apply(state: InstanceState, action: Action) -> Result<Transition, IncorrectState> {
    use InstanceState::*;
    let err = Err(IncorrectState { action, state });
    match (action, state) {
        (Action::Start, Stopped) => Ok(Transition::To(Pending)),
        (Action::Start, Pending | Running) => Ok(Transition::NoOp),
        (Action::Start, Stopping | Terminated) => err,
        (Action::Stop, Running) => Ok(Transition::To(Stopping)),
        (Action::Stop, Stopping | Stopped) => Ok(Transition::NoOp),
        (Action::Stop, Pending | Terminated) => err,
        (Action::Terminate, Terminated) => Ok(Transition::NoOp),
        (Action::Terminate, _) => Ok(Transition::To(Terminated)),
    }
}

/// The state a transitional state settles into once its delay has passed.
pub fn settle(state: InstanceState) -> Option<InstanceState> {
    match state {
        InstanceState::Pending => Some(InstanceState::Running),
        InstanceState::Stopping => Some(InstanceState::Stopped),
        _ => None,
    }
}

/// True while the instance holds its private IP and its name.
pub fn is_live(state: InstanceState) -> bool {
    state != InstanceState::Terminated
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState::*;

    #[test]
    fn every_state_and_action() {
        let ok = |s| Ok(Transition::To(s));
        let noop = Ok(Transition::NoOp);
        let table = [
            (Pending, Action::Start, noop),
            (Running, Action::Start, noop),
            (Stopping, Action::Start, Err(())),
            (Stopped, Action::Start, ok(Pending)),
            (Terminated, Action::Start, Err(())),
            (Pending, Action::Stop, Err(())),
            (Running, Action::Stop, ok(Stopping)),
            (Stopping, Action::Stop, noop),
            (Stopped, Action::Stop, noop),
            (Terminated, Action::Stop, Err(())),
            (Pending, Action::Terminate, ok(Terminated)),
            (Running, Action::Terminate, ok(Terminated)),
            (Stopping, Action::Terminate, ok(Terminated)),
            (Stopped, Action::Terminate, ok(Terminated)),
            (Terminated, Action::Terminate, noop),
        ];
        for (state, action, want) in table {
            let got = apply(state, action).map_err(|e| {
                assert_eq!(e, IncorrectState { action, state });
            });
            assert_eq!(got, want, "{action:?} on {state:?}");
        }
    }

    #[test]
    fn only_transitional_states_settle() {
        assert_eq!(settle(Pending), Some(Running));
        assert_eq!(settle(Stopping), Some(Stopped));
        for s in [Running, Stopped, Terminated] {
            assert_eq!(settle(s), None);
        }
    }

    #[test]
    fn incorrect_state_message_says_what_and_why() {
        let e = apply(Pending, Action::Stop).unwrap_err();
        assert_eq!(e.to_string(), "cannot stop an instance that is pending");
    }
}
