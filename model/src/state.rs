//! The model's state: actors, tasks with their leases, the settings, the other session.
//!
//! It is small, `Copy` and hashable: the checker stores millions of them. Tokens are renumbered
//! (`normalize`) and, for the exhaustive runs, states are replaced by the representative of their
//! symmetry class (`representative`), so that the reachable state space stays finite and small.
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

/// At most this many actors and this many items.
pub const MAX: usize = 6;

/// The stages of a task. `Missing` stands for "no task row".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Missing,
    Queued,
    Merged,
    Done,
}

impl Stage {
    /// The stage an actor moves a task to from `self`. From `done` it tries a reopen, which the stage
    /// graph forbids (`done` is terminal): that is how `invalid_transition` is reached.
    pub fn next(self) -> Stage {
        match self {
            Stage::Queued => Stage::Merged,
            Stage::Merged => Stage::Done,
            Stage::Done => Stage::Queued,
            Stage::Missing => Stage::Missing,
        }
    }

    /// The registered stage graph: `queued -> merged`, `merged -> done`; `done` is terminal.
    pub fn is_edge(from: Stage, to: Stage) -> bool {
        matches!(
            (from, to),
            (Stage::Queued, Stage::Merged) | (Stage::Merged, Stage::Done)
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Missing => "(no row)",
            Stage::Queued => "queued",
            Stage::Merged => "merged",
            Stage::Done => "done",
        }
    }

    pub fn from_name(name: &str) -> Option<Stage> {
        [Stage::Queued, Stage::Merged, Stage::Done]
            .into_iter()
            .find(|stage| stage.name() == name)
    }
}

/// A lease's holder: an actor's boot incarnation, or (session-bound lease) that incarnation's
/// database session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub actor: u8,
    pub boot: u8,
    pub session: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lease {
    pub token: u32,
    pub holder: Holder,
}

/// A task: its stage and its leases, by key. Under the 0.4.0 contract both spellings of the id
/// canonicalise to one key, slot 0; with raw-text keys each spelling has its own slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Item {
    pub stage: Stage,
    pub leases: [Option<Lease>; 2],
}

/// One transition attempt of an actor: the item, the token it was granted (none for a `disabled` or
/// `out_of_scope` grant) and the stage it expects to move the task from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempt {
    pub item: u8,
    pub token: Option<u32>,
    pub expected: Stage,
}

/// Where an actor process is in its program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pc {
    /// Crashed: the process and its database connection are gone.
    Down,
    /// Started with a fresh boot id; recover not called yet.
    Booted,
    /// Recovered; no transition in progress.
    Ready,
    /// Granted; the irreversible effect not done yet (it may still release).
    Holding(Attempt),
    /// The effect is done; it must commit.
    Effected(Attempt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Actor {
    /// The current boot incarnation, from 1.
    pub boot: u8,
    /// The boot registry of this actor's instance: bit b set when boot b was registered by recover.
    pub registered: u8,
    pub pc: Pc,
    /// Acquire calls left (only with a budget).
    pub attempts_left: u8,
}

impl Actor {
    pub fn is_up(&self) -> bool {
        self.pc != Pc::Down
    }

    /// The live boot of the instance: the last one registered (boots only grow).
    fn live_boot(&self) -> Option<u8> {
        (self.registered != 0).then(|| 7 - self.registered.leading_zeros() as u8)
    }

    /// Up with its current boot registered: the session that registered it is connected.
    pub fn is_registered_and_up(&self) -> bool {
        self.is_up() && self.live_boot() == Some(self.boot)
    }

    /// A boot that was registered and then superseded by a later registration.
    pub fn is_superseded(&self, boot: u8) -> bool {
        self.registered & (1 << boot) != 0 && self.live_boot().is_some_and(|live| live > boot)
    }

    pub fn attempt(&self) -> Option<Attempt> {
        match self.pc {
            Pc::Holding(attempt) | Pc::Effected(attempt) => Some(attempt),
            _ => None,
        }
    }

    fn attempt_mut(&mut self) -> Option<&mut Attempt> {
        match &mut self.pc {
            Pc::Holding(attempt) | Pc::Effected(attempt) => Some(attempt),
            _ => None,
        }
    }
}

/// Another session with an open transaction (an operator's, a slow job's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Other {
    Idle,
    /// `SELECT … FROM tasks WHERE id = … FOR UPDATE`: a CAS on that task cannot take the row.
    RowLocked(u8),
    /// An acquire of that item (spelling 0) whose transaction has not ended: it holds the item's
    /// advisory lock, so other acquires of the key are `busy`. It is rolled back, never committed.
    Acquiring(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    pub actors: Few<Actor>,
    pub items: Few<Item>,
    /// `orch_lease.enabled`, the kill-switch.
    pub enabled: bool,
    /// Whether `orch_lease.scopes` covers the scope the actors ask with.
    pub scope_covered: bool,
    pub other: Other,
    pub crashes: u8,
    /// Environment steps left (only with a budget).
    pub environment_left: u8,
    /// The next token a grant takes (one global sequence).
    pub next_token: u32,
}

impl State {
    pub fn take_token(&mut self) -> u32 {
        self.next_token += 1;
        self.next_token - 1
    }

    /// Whether a lease's holder is dead: its boot superseded, or (session-bound) its session gone.
    pub fn is_dead(&self, holder: Holder) -> bool {
        let actor = &self.actors[holder.actor as usize];
        if holder.session {
            !(actor.is_up() && actor.boot == holder.boot)
        } else {
            actor.is_superseded(holder.boot)
        }
    }

    /// Every lease as (item, slot, lease).
    pub fn leases(&self) -> impl Iterator<Item = (u8, u8, Lease)> + '_ {
        self.items.iter().enumerate().flat_map(|(item, it)| {
            it.leases
                .iter()
                .enumerate()
                .filter_map(move |(slot, lease)| lease.map(|l| (item as u8, slot as u8, l)))
        })
    }

    /// Every token the state still refers to (leases and attempts).
    pub fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        let leased = self.leases().map(|(_, _, lease)| lease.token);
        let attempted = self.actors.iter().filter_map(|a| a.attempt()?.token);
        leased.chain(attempted)
    }

    /// Forgets what the tokens' values are, keeping what a step can tell of them. A token is only
    /// ever compared with the lease on the key its attempt is about: an attempt's token is that
    /// lease's (1) or a token whose lease is gone (0), which can never match again since every
    /// grant takes a new one. So every lease gets token 1, a new grant 2: the checker's state space
    /// stays finite, and the same whatever the order of actors and items.
    /// `slot_of(actor)` is the lease slot an actor's spelling names.
    pub fn normalize(&mut self, slot_of: impl Fn(u8) -> usize) {
        let items = self.items;
        for (a, actor) in self.actors.iter_mut().enumerate() {
            if let Some(attempt) = actor.attempt_mut() {
                let lease = items[attempt.item as usize].leases[slot_of(a as u8)];
                let held = attempt.token.is_some() && lease.map(|l| l.token) == attempt.token;
                attempt.token = attempt.token.map(|_| held as u32);
            }
        }
        for item in self.items.iter_mut() {
            for lease in item.leases.iter_mut().flatten() {
                lease.token = 1;
            }
        }
        self.next_token = 2;
    }

    /// The representative of a normalized state's symmetry class: the least renaming over every
    /// order of the items and, when `actors_too`, of the actors. Items are interchangeable under
    /// every rule; actors only where both spellings are one key (not under raw-text keys).
    pub fn representative(&self, orders: &Orders, actors_too: bool) -> State {
        let (actor_count, item_count) = (self.actors.len(), self.items.len());
        let unchanged = [Orders::IDENTITY];
        let actor_orders = match actors_too {
            true => orders.of(actor_count),
            false => &unchanged[..],
        };
        let mut best = *self;
        for actors in actor_orders {
            for items in orders.of(item_count) {
                let candidate = self.renamed(&actors[..actor_count], &items[..item_count]);
                if candidate < best {
                    best = candidate;
                }
            }
        }
        best
    }

    /// The state with actor `actors[i]` renamed i and item `items[j]` renamed j.
    fn renamed(&self, actors: &[u8], items: &[u8]) -> State {
        let actor_name = |old: u8| actors.iter().position(|&a| a == old).unwrap() as u8;
        let item_name = |old: u8| items.iter().position(|&i| i == old).unwrap() as u8;
        let mut next = *self;
        for (new, &old) in actors.iter().enumerate() {
            next.actors[new] = self.actors[old as usize];
            if let Some(attempt) = next.actors[new].attempt_mut() {
                attempt.item = item_name(attempt.item);
            }
        }
        for (new, &old) in items.iter().enumerate() {
            next.items[new] = self.items[old as usize];
            for lease in next.items[new].leases.iter_mut().flatten() {
                lease.holder.actor = actor_name(lease.holder.actor);
            }
        }
        next.other = match self.other {
            Other::Idle => Other::Idle,
            Other::RowLocked(item) => Other::RowLocked(item_name(item)),
            Other::Acquiring(item) => Other::Acquiring(item_name(item)),
        };
        next
    }
}

/// Every order of 0..n for each n up to `MAX`, computed once.
pub struct Orders {
    by_size: Vec<Vec<[u8; MAX]>>,
}

impl Orders {
    const IDENTITY: [u8; MAX] = [0, 1, 2, 3, 4, 5];

    pub fn new(up_to: usize) -> Orders {
        let mut by_size = vec![vec![[0; MAX]]];
        for n in 1..=up_to {
            let mut longer = Vec::new();
            for shorter in &by_size[n - 1] {
                for at in 0..n {
                    let mut order = *shorter;
                    order.copy_within(at..n - 1, at + 1);
                    order[at] = (n - 1) as u8;
                    longer.push(order);
                }
            }
            by_size.push(longer);
        }
        Orders { by_size }
    }

    fn of(&self, n: usize) -> &[[u8; MAX]] {
        &self.by_size[n]
    }
}

/// Up to `MAX` values in place: a `Copy` stand-in for a short `Vec`, so that states copy without
/// allocating. Compares, hashes and prints as the slice of its values.
#[derive(Clone, Copy)]
pub struct Few<T> {
    len: u8,
    values: [T; MAX],
}

impl<T: Copy> Few<T> {
    pub fn filled(value: T, len: usize) -> Few<T> {
        assert!(len <= MAX, "at most {MAX}");
        Few {
            len: len as u8,
            values: [value; MAX],
        }
    }
}

impl<T> Deref for Few<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.values[..self.len as usize]
    }
}

impl<T> DerefMut for Few<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.values[..self.len as usize]
    }
}

impl<T: PartialEq> PartialEq for Few<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Few<T> {}

impl<T: PartialOrd> PartialOrd for Few<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: Ord> Ord for Few<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl<T: Hash> Hash for Few<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl<T: fmt::Debug> fmt::Debug for Few<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
