//! The rest of the order lifecycle: shipments, dispatch, delivery, and the race between a
//! customer's cancel and an admin's dispatch, which shipping decides.
//!
//! Each story is a scenario that takes the app, so it can run against any topology; the tests
//! below run them on the default one (and the happy path on every engine).

use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use contracts::Address;
use kernel::inbox::Processed;
use kernel::{Envelope, EventHandler, Inbox, ModuleContext};
use orders_contracts::{OrderAddressChangeRequested, OrderCancellationRequested};
use reqwest::{Method, Response};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, JsonValue, Statement};
use serde_json::{Value, json};
use shipping_contracts::{ShipmentAddressChangeRefused, ShipmentCancelled};
use uuid::Uuid;

use crate::engines::{Engine, on_every_engine};
use crate::helpers::{As, TestApp, assert_problem, settles, spawn_app, spawn_app_on};
use crate::orders::{customer, eur, order_body};

on_every_engine!(an_order_travels_from_pending_to_delivered_with_its_stock_checked_at_every_step);

async fn an_order_travels_from_pending_to_delivered_with_its_stock_checked_at_every_step(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    happy_path(&app).await;
}

#[tokio::test]
async fn a_cancel_after_dispatch_is_refused_once_the_order_is_shipped() {
    cancel_after_dispatch(&spawn_app().await).await;
}

#[tokio::test]
async fn a_shipment_moves_only_pending_to_dispatched_to_delivered() {
    wrong_state_requests_are_conflicts(&spawn_app().await).await;
}

#[tokio::test]
async fn only_the_owner_and_admins_see_a_shipment_and_only_admins_move_it() {
    access_and_validation(&spawn_app().await).await;
}

#[tokio::test]
async fn when_the_dispatch_comes_first_the_order_ships_and_nothing_is_released() {
    the_dispatch_wins_when_it_comes_first(&spawn_app().await).await;
}

#[tokio::test]
async fn cancels_racing_dispatches_end_each_order_shipped_or_released_never_both() {
    cancels_racing_dispatches(&spawn_app().await).await;
}

#[tokio::test]
async fn a_confirmed_orders_new_address_reaches_its_pending_shipment() {
    address_change_before_dispatch(&spawn_app().await).await;
}

#[tokio::test]
async fn an_address_change_after_dispatch_is_refused_and_the_order_keeps_its_address() {
    address_change_after_dispatch(&spawn_app().await).await;
}

#[tokio::test]
async fn every_orders_and_shipping_event_redelivered_twice_changes_nothing_the_second_time() {
    redelivered_events_change_nothing(&spawn_app().await).await;
}

const TRACKING: &str = "JD0146-0001";

/// A customer's confirmed order and the product it holds units of.
pub struct Confirmed {
    pub token: String,
    pub product: Value,
    pub order: Value,
}

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

/// The instant in `field`; panics if it is absent.
fn at(value: &Value, field: &str) -> DateTime<FixedOffset> {
    let raw = value[field].as_str().unwrap_or_else(|| panic!("{field} is set in {value}"));
    DateTime::parse_from_rfc3339(raw).expect("an RFC 3339 instant")
}

impl TestApp {
    /// An order of `quantity` units of a new product with `on_hand` in stock, once it is confirmed.
    pub async fn confirmed_order(&self, sku: &str, on_hand: i64, quantity: i64) -> Confirmed {
        let product = self.stocked_product(sku, on_hand, eur(250)).await;
        let token = customer(&Uuid::now_v7());
        let placed = self.place(&token, &order_body(&[(&product["id"], quantity)])).await;
        assert_eq!(placed.status(), 201);
        let order = self.settled(&token, &placed.json().await.expect("JSON")).await;
        assert_eq!(order["status"], "confirmed", "{order}");
        Confirmed { token, product, order }
    }

    /// The order's shipment, as its owner sees it, once shipping has opened it.
    pub async fn shipment_of(&self, token: &str, order: &Value) -> Value {
        let path = format!("/shipments?orderId={}", id(order));
        crate::helpers::eventually(15, || async {
            let page = self.get_json_as(token, &path).await;
            page["items"].as_array().and_then(|items| items.first().cloned())
        })
        .await
    }

    /// The shipment, as an admin sees it.
    pub async fn shipment(&self, shipment: &Value) -> Value {
        let path = format!("/shipments/{}", id(shipment));
        self.request(Method::GET, &path, As::Admin).send().await.expect("sent").json().await.expect("JSON")
    }

    /// The shipment once it is `status`.
    pub async fn shipment_until(&self, shipment: &Value, status: &str) -> Value {
        settles(status.to_owned(), || async {
            self.shipment(shipment).await["status"].as_str().unwrap_or("").to_owned()
        })
        .await;
        self.shipment(shipment).await
    }

    pub async fn dispatch(&self, shipment: &Value, who: As) -> Response {
        let path = format!("/shipments/{}/dispatch", id(shipment));
        let body = json!({"carrier": "DHL", "trackingNumber": TRACKING});
        self.request(Method::POST, &path, who).json(&body).send().await.expect("sent")
    }

    pub async fn deliver(&self, shipment: &Value, who: As) -> Response {
        let path = format!("/shipments/{}/deliver", id(shipment));
        self.request(Method::POST, &path, who).send().await.expect("sent")
    }

    /// `(onHand, reserved, available)` of the product.
    pub async fn levels(&self, product: &Value) -> (i64, i64, i64) {
        let stock = self.stock(product).await;
        let figure = |field: &str| stock[field].as_i64().unwrap_or_else(|| panic!("{field} in {stock}"));
        (figure("onHand"), figure("reserved"), figure("available"))
    }

    /// Waits until the product's stock is `expected`.
    pub async fn levels_until(&self, product: &Value, expected: (i64, i64, i64)) {
        settles(expected, || self.levels(product)).await;
    }

    /// `module`'s inbox and event handler, as a broker-backed bus would call them: the very code the
    /// app runs, on the app's database.
    pub async fn consumer(&self, module: &str) -> (Inbox, Arc<dyn EventHandler>, Vec<contracts::EventType>) {
        let registered = bazaar::modules::all().into_iter().find(|m| m.name() == module).expect("a module");
        let db = kernel::db::connect(&self.url_of(module), 2).await.expect("the module's database");
        let ctx = ModuleContext::new(registered.name(), db, Default::default());
        let hosted = registered.start(ctx.clone()).await.expect("the module starts");
        (Inbox::new(ctx.outbox), hosted.handler().expect("an event handler"), registered.consumes())
    }

    /// Every event `module` published, in order.
    pub async fn published(&self, module: &str) -> Vec<Envelope> {
        kernel::testing::published(&self.db(module).await, module).await
    }

    /// Waits until every module's outbox is sent and every queued event handled; none may be dead.
    pub async fn quiet(&self) {
        let modules: Vec<&str> = bazaar::modules::names().collect();
        settles((0, 0), || async {
            let (mut pending, mut dead) = (0, 0);
            for module in &modules {
                let db = self.db(module).await;
                pending += count(&db, &format!("{module}_outbox WHERE published_at IS NULL")).await;
                pending += count(&db, &format!("{module}_inbox WHERE processed_at IS NULL AND dead = false")).await;
                dead += count(&db, &format!("{module}_dead_letters")).await;
            }
            (pending, dead)
        })
        .await;
    }

    /// What the saga left behind, table by table: orders, shipments, stock, reservations and how
    /// many events each module published.
    pub async fn saga_state(&self) -> Value {
        let mut state = serde_json::Map::new();
        for (module, table, key) in [
            ("orders", "orders_orders", "id"),
            ("orders", "orders_lines", "order_id, line_no"),
            ("orders", "orders_products", "product_id"),
            ("shipping", "shipping_shipments", "id"),
            ("inventory", "inventory_stock", "product_id"),
            ("inventory", "inventory_orders", "order_id"),
            ("payments", "payments_payments", "id"),
            ("payments", "payments_fake_intents", "id"),
        ] {
            let db = self.db(module).await;
            let select =
                Statement::from_string(db.get_database_backend(), format!("SELECT * FROM {table} ORDER BY {key}"));
            let rows = JsonValue::find_by_statement(select).all(&db).await.expect("rows");
            state.insert(table.to_owned(), Value::Array(rows));
        }
        for module in ["orders", "shipping", "inventory", "payments"] {
            let db = self.db(module).await;
            state.insert(format!("{module}_outbox"), json!(count(&db, &format!("{module}_outbox")).await));
        }
        Value::Object(state)
    }
}

async fn count(db: &DatabaseConnection, from: &str) -> i64 {
    let select = Statement::from_string(db.get_database_backend(), format!("SELECT COUNT(*) AS n FROM {from}"));
    let row = db.query_one_raw(select).await.expect("a count").expect("a row");
    row.try_get_by_index::<i64>(0).expect("a number")
}

/// pending → confirmed → shipment pending → dispatched → delivered, with the stock and the
/// timestamps of every step.
pub async fn happy_path(app: &TestApp) {
    let product = app.stocked_product("SHIP-HAPPY", 10, eur(250)).await;
    assert_eq!(app.levels(&product).await, (10, 0, 10));
    let token = customer(&Uuid::now_v7());
    let placed = app.place(&token, &order_body(&[(&product["id"], 3)])).await;
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.expect("JSON");
    assert_eq!(order["status"], "pending");
    for stamp in ["confirmedAt", "rejectedAt", "cancellationRequestedAt", "cancelledAt", "shippedAt", "deliveredAt"] {
        assert!(order[stamp].is_null(), "{stamp} of a new order: {order}");
    }

    let confirmed = app.settled(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed");
    assert!(at(&confirmed, "confirmedAt") >= at(&confirmed, "createdAt"));
    assert_eq!(app.levels(&product).await, (10, 3, 7), "reserved, still in the warehouse");

    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!((shipment["status"].as_str(), &shipment["orderId"]), (Some("pending"), &order["id"]));
    assert_eq!(
        shipment["lines"],
        json!([{"productId": product["id"], "sku": "SHIP-HAPPY", "name": "SHIP-HAPPY", "quantity": 3}])
    );
    assert_eq!(shipment["shippingAddress"]["city"], "London");
    assert_eq!(shipment["shippingAddress"]["postalCode"], "SW1Y 4JH");
    assert!(at(&shipment, "createdAt") >= at(&confirmed, "confirmedAt"));
    for stamp in ["dispatchedAt", "deliveredAt", "cancelledAt", "carrier", "trackingNumber"] {
        assert!(shipment[stamp].is_null(), "{stamp} of a pending shipment: {shipment}");
    }
    let own = app.get_json_as(&token, &format!("/shipments/{}", id(&shipment))).await;
    assert_eq!(own, shipment, "the owner reads it by id too");
    assert_eq!(app.levels(&product).await, (10, 3, 7));

    let response = app.dispatch(&shipment, As::Admin).await;
    assert_eq!(response.status(), 200);
    let dispatched: Value = response.json().await.expect("JSON");
    assert_eq!(
        (dispatched["status"].as_str(), dispatched["carrier"].as_str(), dispatched["trackingNumber"].as_str()),
        (Some("dispatched"), Some("DHL"), Some(TRACKING))
    );
    assert!(at(&dispatched, "dispatchedAt") >= at(&shipment, "createdAt"));
    let shipped = app.order_until(&token, &order, "shipped").await;
    assert!(at(&shipped, "shippedAt") >= at(&dispatched, "dispatchedAt"));
    app.levels_until(&product, (7, 0, 7)).await;

    let response = app.deliver(&shipment, As::Admin).await;
    assert_eq!(response.status(), 200);
    let delivered: Value = response.json().await.expect("JSON");
    assert_eq!(delivered["status"], "delivered");
    assert!(at(&delivered, "deliveredAt") >= at(&delivered, "dispatchedAt"));
    assert_eq!(delivered["dispatchedAt"], dispatched["dispatchedAt"]);
    let done = app.order_until(&token, &order, "delivered").await;
    assert!(at(&done, "deliveredAt") >= at(&done, "shippedAt"));
    assert_eq!((&done["confirmedAt"], &done["shippedAt"]), (&confirmed["confirmedAt"], &shipped["shippedAt"]));
    for stamp in ["rejectedAt", "cancellationRequestedAt", "cancelledAt"] {
        assert!(done[stamp].is_null(), "{stamp} of a delivered order: {done}");
    }
    assert_eq!(app.levels(&product).await, (7, 0, 7));

    // Nothing undoes it.
    assert_problem(app.cancel(&token, &order).await, 409).await;
    assert_problem(app.dispatch(&shipment, As::Admin).await, 409).await;
    assert_problem(app.deliver(&shipment, As::Admin).await, 409).await;
    let path = format!("/orders/{}", id(&order));
    let moved = app
        .request(Method::PUT, &path, As::Anonymous)
        .bearer_auth(&token)
        .json(&json!({"shippingAddress": crate::orders::address()}));
    assert_problem(moved.send().await.expect("sent"), 409).await;
    assert_eq!(app.levels(&product).await, (7, 0, 7));
}

/// The cancel wins: the request reaches shipping while the shipment is pending.
pub async fn cancel_before_dispatch(app: &TestApp) {
    let Confirmed { token, product, order } = app.confirmed_order("SHIP-CANCEL", 10, 3).await;
    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!(app.levels(&product).await, (10, 3, 7));

    let response = app.cancel(&token, &order).await;
    assert_eq!(response.status(), 202, "a confirmed order waits for shipping");
    let cancelling: Value = response.json().await.expect("JSON");
    assert_eq!(cancelling["status"], "cancelling");
    assert!(at(&cancelling, "cancellationRequestedAt") >= at(&cancelling, "confirmedAt"));
    assert!(cancelling["cancelledAt"].is_null());

    let cancelled = app.order_until(&token, &order, "cancelled").await;
    assert!(at(&cancelled, "cancelledAt") >= at(&cancelling, "cancellationRequestedAt"));
    assert_eq!(cancelled["cancellationRequestedAt"], cancelling["cancellationRequestedAt"]);
    assert!(cancelled["shippedAt"].is_null());
    let shipment = app.shipment_until(&shipment, "cancelled").await;
    assert!(at(&shipment, "cancelledAt") >= at(&cancelling, "cancellationRequestedAt"));
    assert!(shipment["cancellationReason"].is_string(), "{shipment}");
    assert!(shipment["dispatchedAt"].is_null());
    app.levels_until(&product, (10, 0, 10)).await;

    // A cancelled shipment is never dispatched, nor delivered; the order cannot be cancelled again.
    let refused = assert_problem(app.dispatch(&shipment, As::Admin).await, 409).await;
    assert!(refused["detail"].as_str().expect("a detail").contains("cancelled"), "{refused}");
    assert_problem(app.deliver(&shipment, As::Admin).await, 409).await;
    assert_problem(app.cancel(&token, &order).await, 409).await;
    assert_eq!(app.shipment(&shipment).await["status"], "cancelled");
    assert_eq!(app.levels(&product).await, (10, 0, 10));
}

/// Once dispatched, the order ships and a cancel is refused.
pub async fn cancel_after_dispatch(app: &TestApp) {
    let Confirmed { token, product, order } = app.confirmed_order("SHIP-LATE", 10, 3).await;
    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    app.order_until(&token, &order, "shipped").await;
    let refused = assert_problem(app.cancel(&token, &order).await, 409).await;
    assert!(refused["detail"].as_str().expect("a detail").contains("shipped"), "{refused}");
    app.levels_until(&product, (7, 0, 7)).await;
    let order = app.order(&token, &order).await;
    assert_eq!(order["status"], "shipped");
    assert!(order["cancellationRequestedAt"].is_null() && order["cancelledAt"].is_null(), "{order}");
    assert_eq!(app.shipment(&shipment).await["status"], "dispatched");
}

/// Deliver before dispatch, dispatch twice, deliver twice: each refusal is a 409 and changes nothing.
pub async fn wrong_state_requests_are_conflicts(app: &TestApp) {
    let Confirmed { token, product, order } = app.confirmed_order("SHIP-ORDER", 5, 2).await;
    let shipment = app.shipment_of(&token, &order).await;
    let early = assert_problem(app.deliver(&shipment, As::Admin).await, 409).await;
    assert!(early["detail"].as_str().expect("a detail").contains("pending"), "{early}");
    assert_eq!(app.shipment(&shipment).await, shipment, "a refused delivery changes nothing");
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    let dispatched = app.shipment(&shipment).await;
    assert_problem(app.dispatch(&shipment, As::Admin).await, 409).await;
    assert_eq!(app.shipment(&shipment).await, dispatched, "a second dispatch changes nothing");
    assert_eq!(app.deliver(&shipment, As::Admin).await.status(), 200);
    let delivered = app.shipment(&shipment).await;
    assert_problem(app.deliver(&shipment, As::Admin).await, 409).await;
    assert_problem(app.dispatch(&shipment, As::Admin).await, 409).await;
    assert_eq!(app.shipment(&shipment).await, delivered);
    app.order_until(&token, &order, "delivered").await;
    app.levels_until(&product, (3, 0, 3)).await;
}

/// Who sees a shipment, who moves it, and what bad requests get.
pub async fn access_and_validation(app: &TestApp) {
    let Confirmed { token, order, .. } = app.confirmed_order("SHIP-MINE", 5, 1).await;
    let shipment = app.shipment_of(&token, &order).await;
    let path = format!("/shipments/{}", id(&shipment));
    let stranger = customer(&Uuid::now_v7());

    let theirs = app.request(Method::GET, &path, As::Anonymous).bearer_auth(&stranger).send().await.expect("sent");
    assert_problem(theirs, 404).await;
    let by_order = format!("/shipments?orderId={}", id(&order));
    assert_eq!(app.get_json_as(&stranger, &by_order).await["items"], json!([]));
    assert_eq!(app.get_json_as(&stranger, "/shipments").await["items"], json!([]));
    assert_eq!(app.get_json_as(&token, "/shipments").await["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(app.shipment(&shipment).await["id"], shipment["id"], "an admin sees every shipment");
    let all: Value =
        app.request(Method::GET, &by_order, As::Admin).send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(all["items"][0]["id"], shipment["id"]);
    assert_problem(app.request(Method::GET, "/shipments", As::Anonymous).send().await.expect("sent"), 401).await;
    assert_problem(app.request(Method::GET, &path, As::Anonymous).send().await.expect("sent"), 401).await;

    // Customers, the owner included, do not move shipments.
    let owner_dispatch = format!("{path}/dispatch");
    let as_owner = app
        .request(Method::POST, &owner_dispatch, As::Anonymous)
        .bearer_auth(&token)
        .json(&json!({"carrier": "DHL", "trackingNumber": TRACKING}));
    assert_problem(as_owner.send().await.expect("sent"), 403).await;
    assert_problem(app.dispatch(&shipment, As::Customer).await, 403).await;
    assert_problem(app.deliver(&shipment, As::Customer).await, 403).await;
    assert_problem(app.dispatch(&shipment, As::Anonymous).await, 401).await;

    let unknown = json!({"id": Uuid::now_v7()});
    assert_problem(app.dispatch(&unknown, As::Admin).await, 404).await;
    assert_problem(app.deliver(&unknown, As::Admin).await, 404).await;
    let invalid = app.request(Method::POST, &owner_dispatch, As::Admin).json(&json!({"trackingNumber": "no spaces"}));
    let problem = assert_problem(invalid.send().await.expect("sent"), 422).await;
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["carrier", "trackingNumber"]);
    let bad_requests = ["/shipments?orderId=42", "/shipments/not-an-id", "/shipments?limit=many"];
    for bad in bad_requests {
        assert_problem(app.request(Method::GET, bad, As::Admin).send().await.expect("sent"), 400).await;
    }
    for invalid in ["/shipments?status=lost", "/shipments?limit=0", "/shipments?after=nope"] {
        assert_problem(app.request(Method::GET, invalid, As::Admin).send().await.expect("sent"), 422).await;
    }
    assert_eq!(app.shipment(&shipment).await, shipment, "nothing refused changed it");
}

/// The dispatch wins: the order ships, its stock is sold, and the cancel request, however late it
/// reaches shipping, changes nothing.
pub async fn the_dispatch_wins_when_it_comes_first(app: &TestApp) {
    let Confirmed { token, product, order } = app.confirmed_order("RACE-DISPATCH", 10, 3).await;
    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    // Orders may not have heard of the dispatch yet (202: `cancelling`) or may have (409): both end shipped.
    let cancel = app.cancel(&token, &order).await.status().as_u16();
    assert!(matches!(cancel, 202 | 409), "{cancel}");
    let shipped = app.order_until(&token, &order, "shipped").await;
    assert!(shipped["cancelledAt"].is_null(), "{shipped}");
    app.levels_until(&product, (7, 0, 7)).await;

    // Shipping hears a cancel request after the dispatch, as a bus delivers it however late: refused.
    let user_id = order["userId"].as_str().expect("a user").parse().expect("a UUID");
    let order_id = id(&order).parse().expect("a UUID");
    let request = Envelope::new(&OrderCancellationRequested { order_id, user_id }).expect("an envelope");
    let (inbox, handler, _) = app.consumer("shipping").await;
    assert_eq!(inbox.process("shipping", &request, handler.as_ref()).await.expect("handled"), Processed::Handled);
    let after = app.shipment(&shipment).await;
    assert_eq!((after["status"].as_str(), &after["cancelledAt"]), (Some("dispatched"), &Value::Null));
    assert!(!app.published("shipping").await.iter().any(|e| e.is::<ShipmentCancelled>()));
    app.quiet().await;
    assert_eq!(app.order(&token, &order).await["status"], "shipped");
    assert_eq!(app.levels(&product).await, (7, 0, 7), "sold, nothing released");
}

/// Cancels and dispatches sent at once for several orders: each order ends `shipped` with its
/// dispatch accepted, or `cancelled` with its dispatch refused, and the stock adds up.
pub async fn cancels_racing_dispatches(app: &TestApp) {
    let product = app.stocked_product("RACE-MANY", 10, eur(100)).await;
    let mut orders = Vec::new();
    for _ in 0..6 {
        let token = customer(&Uuid::now_v7());
        let placed = app.place(&token, &order_body(&[(&product["id"], 1)])).await;
        let order = app.settled(&token, &placed.json().await.expect("JSON")).await;
        assert_eq!(order["status"], "confirmed");
        let shipment = app.shipment_of(&token, &order).await;
        orders.push((token, order, shipment));
    }
    assert_eq!(app.levels(&product).await, (10, 6, 4));
    let answers = futures::future::join_all(orders.iter().map(|(token, order, shipment)| async move {
        let (cancel, dispatch) = tokio::join!(app.cancel(token, order), app.dispatch(shipment, As::Admin));
        (cancel.status().as_u16(), dispatch.status().as_u16())
    }))
    .await;
    let mut shipped = 0;
    for ((token, order, shipment), (cancel, dispatch)) in orders.iter().zip(answers) {
        let end = crate::helpers::eventually(15, || async {
            let status = app.order(token, order).await["status"].as_str().unwrap_or("").to_owned();
            matches!(status.as_str(), "shipped" | "cancelled").then_some(status)
        })
        .await;
        let shipment = app.shipment(shipment).await;
        match end.as_str() {
            "shipped" => {
                assert_eq!((dispatch, shipment["status"].as_str()), (200, Some("dispatched")));
                assert!(matches!(cancel, 202 | 409), "{cancel}");
                shipped += 1;
            }
            _ => {
                assert_eq!((cancel, dispatch, shipment["status"].as_str()), (202, 409, Some("cancelled")));
            }
        }
    }
    app.levels_until(&product, (10 - shipped, 0, 10 - shipped)).await;
}

/// The address the tests move orders to.
pub fn bath() -> Value {
    json!({"name": "Ada Lovelace", "line1": "1 Royal Crescent", "city": "Bath", "postalCode": "BA1 2LR", "country": "GB"})
}

impl TestApp {
    /// `PUT /orders/{id}` with `address`, as `token`.
    pub async fn change_address(&self, token: &str, order: &Value, address: &Value) -> Response {
        let path = format!("/orders/{}", id(order));
        let put = self.request(Method::PUT, &path, As::Anonymous).bearer_auth(token);
        put.json(&json!({"shippingAddress": address})).send().await.expect("sent")
    }

    /// The order once shipping has answered its address change.
    pub async fn address_settled(&self, token: &str, order: &Value) -> Value {
        crate::helpers::eventually(15, || async {
            let order = self.order(token, order).await;
            order["requestedShippingAddress"].is_null().then_some(order)
        })
        .await
    }

    /// Hands shipping a request to move `order` to Bath, as a late bus would; returns its answer.
    async fn late_address_request(&self, order: &Value) -> Option<ShipmentAddressChangeRefused> {
        let event = OrderAddressChangeRequested {
            order_id: id(order).parse().expect("a UUID"),
            user_id: order["userId"].as_str().expect("a user").parse().expect("a UUID"),
            shipping_address: serde_json::from_value::<Address>(bath()).expect("an address"),
        };
        let request = Envelope::new(&event).expect("an envelope");
        let (inbox, handler, _) = self.consumer("shipping").await;
        assert_eq!(inbox.process("shipping", &request, handler.as_ref()).await.expect("handled"), Processed::Handled);
        let answers = self.published("shipping").await;
        let answer = answers.iter().find(|e| e.causation_id == Some(request.id))?;
        Some(answer.decode::<ShipmentAddressChangeRefused>().expect("a refusal"))
    }
}

/// A confirmed order's new address: 202 while shipping decides, then the pending shipment and the
/// order both show it, and the parcel leaves for it.
pub async fn address_change_before_dispatch(app: &TestApp) {
    let Confirmed { token, order, .. } = app.confirmed_order("ADDR-BEFORE", 10, 2).await;
    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!(shipment["shippingAddress"]["city"], "London");

    let response = app.change_address(&token, &order, &bath()).await;
    assert_eq!(response.status(), 202, "a confirmed order waits for shipping");
    let requested: Value = response.json().await.expect("JSON");
    assert_eq!(
        (requested["status"].as_str(), &requested["shippingAddress"]["city"]),
        (Some("confirmed"), &json!("London"))
    );
    assert_eq!(requested["requestedShippingAddress"]["city"], "Bath");
    assert!(at(&requested, "addressChangeRequestedAt") >= at(&requested, "confirmedAt"));

    let settled = app.address_settled(&token, &order).await;
    assert_eq!(
        settled["shippingAddress"],
        json!({"name": "Ada Lovelace", "line1": "1 Royal Crescent", "line2": null,
        "city": "Bath", "postalCode": "BA1 2LR", "country": "GB"})
    );
    assert!(settled["addressChangeRequestedAt"].is_null(), "{settled}");
    assert_eq!(settled["status"], "confirmed");
    let moved = app.shipment(&shipment).await;
    assert_eq!((moved["status"].as_str(), &moved["shippingAddress"]), (Some("pending"), &settled["shippingAddress"]));

    // The same address again is no change (200); another goes through the same way.
    assert_eq!(app.change_address(&token, &order, &bath()).await.status(), 200);
    assert_eq!(app.change_address(&token, &order, &crate::orders::address()).await.status(), 202);
    assert_eq!(app.address_settled(&token, &order).await["shippingAddress"]["city"], "London");
    assert_eq!(app.shipment(&shipment).await["shippingAddress"]["city"], "London");

    assert_eq!(app.change_address(&token, &order, &bath()).await.status(), 202);
    app.address_settled(&token, &order).await;
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    let shipped = app.order_until(&token, &order, "shipped").await;
    let dispatched = app.shipment(&shipment).await;
    assert_eq!(dispatched["shippingAddress"], shipped["shippingAddress"]);
    assert_eq!(shipped["shippingAddress"]["city"], "Bath");
    assert_problem(app.change_address(&token, &order, &crate::orders::address()).await, 409).await;
}

/// Dispatched first: a change orders still asks for is refused by shipping and the order keeps the
/// address the parcel left with; once orders knows it shipped, it refuses itself (409).
pub async fn address_change_after_dispatch(app: &TestApp) {
    let Confirmed { token, order, .. } = app.confirmed_order("ADDR-AFTER", 10, 2).await;
    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    // Orders may not have heard of the dispatch yet (202, then shipping refuses) or may have (409).
    let response = app.change_address(&token, &order, &bath()).await;
    match response.status().as_u16() {
        202 => {
            let settled = app.address_settled(&token, &order).await;
            assert_eq!(settled["shippingAddress"]["city"], "London", "{settled}");
        }
        409 => {}
        other => panic!("{other}"),
    }
    let shipped = app.order_until(&token, &order, "shipped").await;
    assert_eq!(shipped["shippingAddress"]["city"], "London");
    assert!(shipped["requestedShippingAddress"].is_null() && shipped["addressChangeRequestedAt"].is_null());
    assert_problem(app.change_address(&token, &order, &bath()).await, 409).await;

    // However late a request reaches shipping, a dispatched shipment refuses it.
    let refused = app.late_address_request(&order).await.expect("a refusal");
    assert_eq!(refused.shipment_id.to_string(), id(&shipment));
    assert!(refused.reason.contains("dispatched"), "{}", refused.reason);
    app.quiet().await;
    assert_eq!(app.shipment(&shipment).await["shippingAddress"]["city"], "London");
    assert_eq!(app.order(&token, &order).await["shippingAddress"]["city"], "London");
}

/// Every event the orders, shipping and payments modules consume, delivered again twice once the
/// saga has settled: the inbox drops a redelivery, and a copy under a new id finds the state moved
/// on (and moves no money).
pub async fn redelivered_events_change_nothing(app: &TestApp) {
    // Every way an order ends: delivered, cancelled once confirmed, cancelled while pending, rejected.
    let product = app.stocked_product("REDELIVER", 10, eur(100)).await;
    let token = customer(&Uuid::now_v7());
    let place = |quantity: i64| {
        let body = order_body(&[(&product["id"], quantity)]);
        let token = &token;
        async move { app.place(token, &body).await.json::<Value>().await.expect("JSON") }
    };
    let pending = place(1).await;
    assert!(matches!(app.cancel(&token, &pending).await.status().as_u16(), 200 | 202));
    let delivered = place(3).await;
    app.settled(&token, &delivered).await;
    let shipment = app.shipment_of(&token, &delivered).await;
    assert_eq!(app.change_address(&token, &delivered, &bath()).await.status(), 202);
    assert_eq!(app.address_settled(&token, &delivered).await["shippingAddress"]["city"], "Bath");
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    assert_eq!(app.deliver(&shipment, As::Admin).await.status(), 200);
    // A request too late: refused, and the order, with none waiting, ignores the refusal.
    let confirmed = place(1).await;
    app.settled(&token, &confirmed).await;
    let late = app.shipment_of(&token, &confirmed).await;
    assert_eq!(app.dispatch(&late, As::Admin).await.status(), 200);
    assert!(app.late_address_request(&confirmed).await.is_some());
    let cancelled = place(2).await;
    assert_eq!(app.settled(&token, &cancelled).await["status"], "confirmed");
    app.shipment_of(&token, &cancelled).await;
    assert_eq!(app.cancel(&token, &cancelled).await.status(), 202);
    let rejected = place(50).await;
    assert_eq!(app.settled(&token, &rejected).await["status"], "rejected");
    // Payments' every event: one declined, one completed by the customer after 3-D Secure (the
    // refund is the cancelled order's).
    let declined = app.place_paid(&token, &product, 1, Some("pm_card_chargeDeclined")).await;
    assert_eq!(app.settled(&token, &declined).await["status"], "rejected");
    let authenticated = app.place_paid(&token, &product, 1, Some("pm_card_threeDSecure2Required")).await;
    let payment = app.payment_until(&token, &authenticated, "requires_action").await;
    assert_eq!(app.complete_fake(&token, &payment, "confirm").await.status(), 200);
    assert_eq!(app.settled(&token, &authenticated).await["status"], "confirmed");
    // The basket's checkout (declined, so that the stock comes back).
    let checked_out = crate::basket::check_out_one(app, &token, &product, 1, "pm_card_chargeDeclined").await;
    assert_eq!(app.decided(&token, &checked_out).await["status"], "rejected");
    let path = format!("/products/{}", id(&product));
    let renamed =
        app.request(Method::PUT, &path, As::Admin).json(&crate::helpers::product_body("REDELIVER", "Renamed"));
    assert_eq!(renamed.send().await.expect("sent").status(), 200);
    app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent");
    for (order, status) in
        [(&pending, "cancelled"), (&delivered, "delivered"), (&cancelled, "cancelled"), (&confirmed, "shipped")]
    {
        app.order_until(&token, order, status).await;
    }
    app.payment_until(&token, &cancelled, "refunded").await;
    app.quiet().await;
    let before = app.saga_state().await;
    assert_eq!(app.levels(&product).await, (6, 1, 5));

    let mut published = Vec::new();
    for module in ["catalog", "inventory", "orders", "shipping", "payments", "basket"] {
        published.extend(app.published(module).await);
    }
    for module in ["orders", "shipping", "payments", "basket"] {
        let (inbox, handler, consumes) = app.consumer(module).await;
        for event_type in &consumes {
            let events: Vec<&Envelope> = published.iter().filter(|e| e.matches(event_type)).collect();
            assert!(!events.is_empty(), "the scenario has a {event_type} for {module}");
            for envelope in events {
                for _ in 0..2 {
                    let again = inbox.process(module, envelope, handler.as_ref()).await.expect("processed");
                    assert_eq!(again, Processed::Duplicate, "{module} redelivered {event_type}");
                }
                // Product copies are last-write-wins upserts: a copy of an old snapshot is not a redelivery.
                if envelope.source == "catalog" {
                    continue;
                }
                let mut copy = envelope.clone();
                copy.id = Uuid::now_v7();
                for expected in [Processed::Handled, Processed::Duplicate] {
                    let outcome = inbox.process(module, &copy, handler.as_ref()).await.expect("processed");
                    assert_eq!(outcome, expected, "{module} given a copy of {event_type}");
                }
            }
        }
    }
    app.quiet().await;
    assert_eq!(app.saga_state().await, before);
    assert_eq!(app.levels(&product).await, (6, 1, 5));
}
