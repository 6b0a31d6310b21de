//! Typed event routing: a module says once which events it consumes and who handles each.
//!
//! ```ignore
//! pub fn routes() -> EventRoutes<OrdersEvents> {
//!     EventRoutes::new().on::<StockReserved>().on::<StockReservationFailed>()
//! }
//! ```
//! [`EventRoutes::events`] is the module's `consumes()` (the broker's bindings), and
//! [`EventRoutes::bind`] the [`EventHandler`] the delivery pipeline calls: one list, so a consumed
//! event cannot lack a handler nor a handled one its binding. Each `on::<E>()` needs an
//! `impl Handles<E>` on the handler type: decode is done here, the handler delegates.

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{EventType, IntegrationEvent};
use futures::future::BoxFuture;
use sea_orm::DatabaseTransaction;

use crate::{Envelope, EventHandler, HandlerError};

/// What `S` does with one event `E` it consumes: write its effect through `txn` (the inbox commits
/// it with the record that the event was handled).
#[async_trait]
pub trait Handles<E: IntegrationEvent>: Send + Sync + 'static {
    async fn handle(&self, txn: &DatabaseTransaction, event: E, envelope: &Envelope) -> Result<(), HandlerError>;
}

type Dispatch<S> = for<'a> fn(&'a S, &'a DatabaseTransaction, &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>>;

/// The events a module consumes, each with the handler's method for it.
pub struct EventRoutes<S> {
    routes: Vec<(EventType, Dispatch<S>)>,
    committed: Option<fn(&S)>,
}

impl<S: Send + Sync + 'static> Default for EventRoutes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Send + Sync + 'static> EventRoutes<S> {
    pub fn new() -> Self {
        Self { routes: Vec::new(), committed: None }
    }

    /// Consumes `E`, handled by `S`'s [`Handles<E>`].
    ///
    /// # Panics
    /// If `E` is routed twice: a module's routes are a constant, so this fails its first test.
    pub fn on<E: IntegrationEvent>(mut self) -> Self
    where
        S: Handles<E>,
    {
        let event = E::event_type();
        assert!(self.routes.iter().all(|(routed, _)| *routed != event), "{event} is routed twice");
        self.routes.push((event, dispatch::<S, E>));
        self
    }

    /// Runs `hook` after every commit of events `S` handled ([`EventHandler::committed`]): to wake
    /// a worker that acts on the rows the handlers wrote.
    pub fn after_commit(mut self, hook: fn(&S)) -> Self {
        self.committed = Some(hook);
        self
    }

    /// The events routed: the module's `consumes()`.
    pub fn events(&self) -> Vec<EventType> {
        self.routes.iter().map(|(event, _)| *event).collect()
    }

    /// The routes with the handler that serves them: what the delivery pipeline calls.
    pub fn bind(self, handler: S) -> Arc<dyn EventHandler> {
        Arc::new(Bound { routes: self.routes, committed: self.committed, handler })
    }
}

fn dispatch<'a, S: Handles<E>, E: IntegrationEvent>(
    handler: &'a S,
    txn: &'a DatabaseTransaction,
    envelope: &'a Envelope,
) -> BoxFuture<'a, Result<(), HandlerError>> {
    Box::pin(async move {
        let event = envelope.decode::<E>()?;
        handler.handle(txn, event, envelope).await
    })
}

struct Bound<S> {
    routes: Vec<(EventType, Dispatch<S>)>,
    committed: Option<fn(&S)>,
    handler: S,
}

#[async_trait]
impl<S: Send + Sync + 'static> EventHandler for Bound<S> {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
        match self.routes.iter().find(|(event, _)| envelope.matches(event)) {
            Some((_, dispatch)) => dispatch(&self.handler, txn, envelope).await,
            None => Err(HandlerError::Malformed(format!("{} is not routed here", envelope.event))),
        }
    }

    fn committed(&self) {
        if let Some(hook) = self.committed {
            hook(&self.handler);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::TransactionTrait;
    use serde::{Deserialize, Serialize};
    use std::sync::Mutex;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Pinged {
        n: u32,
    }

    enum Tests {}

    impl contracts::Publisher for Tests {
        const NAME: &'static str = "tests";
    }

    impl IntegrationEvent for Pinged {
        type Publisher = Tests;
        const NAME: &'static str = "Pinged";
        const VERSION: u32 = 1;
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Ponged {}

    impl IntegrationEvent for Ponged {
        type Publisher = Tests;
        const NAME: &'static str = "Ponged";
        const VERSION: u32 = 1;
    }

    #[derive(Default)]
    struct Heard(Mutex<Vec<u32>>);

    #[async_trait]
    impl Handles<Pinged> for Heard {
        async fn handle(&self, _txn: &DatabaseTransaction, event: Pinged, _: &Envelope) -> Result<(), HandlerError> {
            self.0.lock().expect("not poisoned").push(event.n);
            Ok(())
        }
    }

    #[async_trait]
    impl Handles<Ponged> for Heard {
        async fn handle(&self, _txn: &DatabaseTransaction, _: Ponged, _: &Envelope) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_list_of_routes_is_both_what_a_module_consumes_and_who_handles_it() {
        let routes = EventRoutes::<Heard>::new().on::<Pinged>().on::<Ponged>();
        assert_eq!(routes.events(), [Pinged::event_type(), Ponged::event_type()]);

        let db = sea_orm::Database::connect("sqlite::memory:").await.expect("a database");
        let handler = EventRoutes::<Heard>::new().on::<Pinged>().bind(Heard::default());
        let txn = db.begin().await.expect("a transaction");
        handler.handle(&txn, &Envelope::new(&Pinged { n: 7 }).expect("JSON")).await.expect("handled");

        let unrouted = handler.handle(&txn, &Envelope::new(&Ponged {}).expect("JSON")).await;
        assert!(matches!(unrouted, Err(HandlerError::Malformed(_))), "{unrouted:?}");
        let mut garbled = Envelope::new(&Pinged { n: 8 }).expect("JSON");
        garbled.data = serde_json::json!({"n": "eight"});
        assert!(matches!(handler.handle(&txn, &garbled).await, Err(HandlerError::Malformed(_))));
    }

    #[test]
    #[should_panic(expected = "routed twice")]
    fn an_event_routed_twice_is_refused() {
        let _ = EventRoutes::<Heard>::new().on::<Pinged>().on::<Pinged>();
    }
}
