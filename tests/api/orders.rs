//! The order saga in the default topology: orders, inventory and the catalog over the bus.

use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::engines::{Engine, on_every_engine};
use crate::helpers::{
    As, TestApp, assert_problem, eventually, product_body, settles, spawn_app, spawn_app_on, spawn_app_with, token_with,
};

on_every_engine!(
    an_order_within_stock_is_confirmed_and_reserves_its_units,
    fifty_concurrent_orders_for_ten_units_confirm_exactly_ten,
    an_idempotent_replay_returns_the_first_response_and_creates_one_order,
    idempotency_keys_that_differ_only_in_case_are_two_orders,
);

pub fn address() -> Value {
    json!({"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postalCode": "SW1Y 4JH", "country": "GB"})
}

pub fn order_body(items: &[(&Value, i64)]) -> Value {
    let items: Vec<Value> = items.iter().map(|(id, q)| json!({"productId": id, "quantity": q})).collect();
    json!({"items": items, "shippingAddress": address(), "paymentMethod": "pm_card_visa"})
}

/// A customer's token; the same `user` gives the same customer.
pub fn customer(user: &uuid::Uuid) -> String {
    token_with(json!({"sub": user, "role": "customer"}), 900, crate::helpers::PRIVATE_KEY)
}

impl TestApp {
    /// A product in the catalog with `on_hand` units in stock, known to orders and inventory.
    pub async fn stocked_product(&self, sku: &str, on_hand: i64, price: Value) -> Value {
        let mut body = product_body(sku, sku);
        body["price"] = price;
        let product = self.create_product(&body).await;
        assert_eq!(product.status(), 201);
        let product: Value = product.json().await.expect("JSON");
        let id = product["id"].as_str().expect("an id").to_owned();
        let path = format!("/inventory/{id}");
        eventually(10, || async {
            let put = self.request(Method::PUT, &path, As::Admin).json(&json!({"onHand": on_hand})).send().await;
            (put.expect("sent").status() == 200).then_some(())
        })
        .await;
        let orders = self.db("orders").await;
        eventually(10, || async {
            let rows = orders
                .query_all_raw(Statement::from_string(orders.get_database_backend(), "SELECT sku FROM orders_products"))
                .await
                .expect("a query");
            let known = rows.iter().any(|r| r.try_get::<String>("", "sku").is_ok_and(|s| s == sku));
            known.then_some(())
        })
        .await;
        product
    }

    pub async fn place(&self, token: &str, body: &Value) -> reqwest::Response {
        self.request(Method::POST, "/orders", As::Anonymous).bearer_auth(token).json(body).send().await.expect("sent")
    }

    /// Waits until the order leaves `pending`; returns it.
    pub async fn settled(&self, token: &str, order: &Value) -> Value {
        let path = format!("/orders/{}", order["id"].as_str().expect("an id"));
        eventually(15, || async {
            let response =
                self.request(Method::GET, &path, As::Anonymous).bearer_auth(token).send().await.expect("sent");
            let order: Value = response.json().await.expect("JSON");
            (order["status"] != "pending" && order["status"] != "awaiting_payment").then_some(order)
        })
        .await
    }

    /// The order as `token` sees it.
    pub async fn order(&self, token: &str, order: &Value) -> Value {
        self.get_json_as(token, &format!("/orders/{}", order["id"].as_str().expect("an id"))).await
    }

    /// The order once it is `status`.
    pub async fn order_until(&self, token: &str, order: &Value, status: &str) -> Value {
        settles(status.to_owned(), || async {
            self.order(token, order).await["status"].as_str().unwrap_or("").to_owned()
        })
        .await;
        self.order(token, order).await
    }

    /// `DELETE /orders/{id}` as `token`.
    pub async fn cancel(&self, token: &str, order: &Value) -> reqwest::Response {
        let path = format!("/orders/{}", order["id"].as_str().expect("an id"));
        self.request(Method::DELETE, &path, As::Anonymous).bearer_auth(token).send().await.expect("sent")
    }

    pub async fn stock(&self, product: &Value) -> Value {
        self.get(&format!("/inventory/{}", product["id"].as_str().expect("an id"))).await.json().await.expect("JSON")
    }
}

pub fn eur(amount: i64) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

async fn an_order_within_stock_is_confirmed_and_reserves_its_units(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.stocked_product("SAGA-1", 10, eur(250)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let placed = app.place(&token, &order_body(&[(&product["id"], 3)])).await;
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.expect("JSON");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["lines"][0]["sku"], "SAGA-1");
    assert_eq!(order["lines"][0]["unitPrice"], eur(250));
    assert_eq!(order["lines"][0]["lineTotal"], eur(750));
    assert_eq!(order["total"], eur(750));

    let settled = app.settled(&token, &order).await;
    assert_eq!(settled["status"], "confirmed");
    assert!(settled["confirmedAt"].is_string());
    let stock = app.stock(&product).await;
    assert_eq!(
        (stock["onHand"].as_i64(), stock["reserved"].as_i64(), stock["available"].as_i64()),
        (Some(10), Some(3), Some(7))
    );

    // Cancelling a confirmed order asks shipping first; then its units are released.
    let response = app.cancel(&token, &order).await;
    assert_eq!(response.status(), 202);
    let cancelling: Value = response.json().await.expect("JSON");
    assert_eq!(cancelling["status"], "cancelling");
    assert!(cancelling["cancellationRequestedAt"].is_string());
    let cancelled = app.order_until(&token, &order, "cancelled").await;
    assert!(cancelled["cancelledAt"].is_string());
    eventually(10, || async { (app.stock(&product).await["reserved"] == 0).then_some(()) }).await;
    assert_problem(app.cancel(&token, &order).await, 409).await;
}

/// An order beyond the stock is rejected and reserves nothing (every topology: topologies.rs).
pub async fn rejection(app: &TestApp) {
    let product = app.stocked_product("SAGA-2", 10, eur(100)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let order: Value = app.place(&token, &order_body(&[(&product["id"], 20)])).await.json().await.expect("JSON");
    let settled = app.settled(&token, &order).await;
    assert_eq!(settled["status"], "rejected");
    assert!(settled["rejectionReason"].as_str().expect("a reason").contains("10 available of 20"), "{settled}");
    assert_eq!(app.stock(&product).await["reserved"], 0);
}

async fn fifty_concurrent_orders_for_ten_units_confirm_exactly_ten(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    fifty_orders_for_ten_units(&app).await;
}

/// 50 customers race for the last 10 units: exactly 10 orders are confirmed, 40 rejected.
pub async fn fifty_orders_for_ten_units(app: &TestApp) {
    let product = app.stocked_product("LAST-10", 10, eur(999)).await;
    let placed = futures::future::join_all((0..50).map(|_| {
        let token = customer(&uuid::Uuid::now_v7());
        let body = order_body(&[(&product["id"], 1)]);
        async move {
            let order: Value = app.place(&token, &body).await.json().await.expect("JSON");
            (token, order)
        }
    }))
    .await;
    let mut confirmed = 0;
    let mut rejected = 0;
    for (token, order) in &placed {
        match app.settled(token, order).await["status"].as_str() {
            Some("confirmed") => confirmed += 1,
            Some("rejected") => rejected += 1,
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!((confirmed, rejected), (10, 40));
    let stock = app.stock(&product).await;
    assert_eq!((stock["reserved"].as_i64(), stock["available"].as_i64()), (Some(10), Some(0)));
}

async fn an_idempotent_replay_returns_the_first_response_and_creates_one_order(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.stocked_product("IDEM-1", 100, eur(500)).await;
    let user = uuid::Uuid::now_v7();
    let token = customer(&user);
    let body = order_body(&[(&product["id"], 2)]);
    let send = |key: &'static str, body: Value| {
        let token = token.clone();
        let app = &app;
        async move {
            app.request(Method::POST, "/orders", As::Anonymous)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .expect("sent")
        }
    };
    let concurrent = futures::future::join_all((0..8).map(|_| send("checkout-42", body.clone()))).await;
    let mut ids = Vec::new();
    for response in concurrent {
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.expect("JSON");
        ids.push(order["id"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one order: {ids:?}");
    let first: Value = send("checkout-42", body.clone()).await.json().await.expect("JSON");
    assert_eq!(first["id"], ids[0]);
    assert_eq!(first["status"], "pending", "the first response, as it was");
    let other = send("checkout-42", order_body(&[(&product["id"], 3)])).await;
    assert_eq!(assert_problem(other, 422).await["errors"][0]["field"], "Idempotency-Key");

    let listed: Value = app.get_json_as(&token, "/orders").await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 1);
}

#[tokio::test]
async fn a_customer_cannot_see_or_change_another_customers_order() {
    let app = spawn_app().await;
    let product = app.stocked_product("MINE-1", 5, eur(100)).await;
    let owner = customer(&uuid::Uuid::now_v7());
    let stranger = customer(&uuid::Uuid::now_v7());
    let order: Value = app.place(&owner, &order_body(&[(&product["id"], 1)])).await.json().await.expect("JSON");
    let path = format!("/orders/{}", order["id"].as_str().expect("an id"));
    for method in [Method::GET, Method::DELETE] {
        let response = app.request(method, &path, As::Anonymous).bearer_auth(&stranger).send().await.expect("sent");
        assert_problem(response, 404).await;
    }
    let put = app
        .request(Method::PUT, &path, As::Anonymous)
        .bearer_auth(&stranger)
        .json(&json!({"shippingAddress": address()}));
    assert_problem(put.send().await.expect("sent"), 404).await;
    let theirs: Value = app.get_json_as(&stranger, "/orders").await;
    assert_eq!(theirs["items"].as_array().expect("items").len(), 0);
    let admin: Value =
        app.request(Method::GET, &path, As::Admin).send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(admin["id"], order["id"]);
    assert_problem(app.request(Method::GET, "/orders", As::Anonymous).send().await.expect("sent"), 401).await;
}

#[tokio::test]
async fn the_address_changes_until_the_order_ends_and_lists_filter_by_status() {
    let app = spawn_app().await;
    let product = app.stocked_product("ADDR-1", 5, eur(100)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let order: Value = app.place(&token, &order_body(&[(&product["id"], 1)])).await.json().await.expect("JSON");
    let path = format!("/orders/{}", order["id"].as_str().expect("an id"));
    let mut moved = address();
    moved["city"] = json!("Bath");
    let changed =
        app.request(Method::PUT, &path, As::Anonymous).bearer_auth(&token).json(&json!({"shippingAddress": moved}));
    let changed = changed.send().await.expect("sent");
    // Pending: changed at once. Confirmed meanwhile: asked of shipping, which moves the pending shipment.
    match changed.status().as_u16() {
        200 => {
            let changed: Value = changed.json().await.expect("JSON");
            assert_eq!(changed["shippingAddress"]["city"], "Bath");
            assert!(changed["requestedShippingAddress"].is_null() && changed["addressChangeRequestedAt"].is_null());
        }
        202 => {
            let changed: Value = changed.json().await.expect("JSON");
            assert_eq!(changed["requestedShippingAddress"]["city"], "Bath");
        }
        other => panic!("{other}"),
    }
    assert_eq!(app.address_settled(&token, &order).await["shippingAddress"]["city"], "Bath");
    let bad = app
        .request(Method::PUT, &path, As::Anonymous)
        .bearer_auth(&token)
        .json(&json!({"shippingAddress": {"name": "x"}}));
    assert_problem(bad.send().await.expect("sent"), 422).await;

    app.settled(&token, &order).await;
    assert_eq!(app.cancel(&token, &order).await.status(), 202);
    // `cancelling` or already `cancelled`: either way the address is settled.
    let late =
        app.request(Method::PUT, &path, As::Anonymous).bearer_auth(&token).json(&json!({"shippingAddress": address()}));
    assert_problem(late.send().await.expect("sent"), 409).await;
    app.order_until(&token, &order, "cancelled").await;

    let cancelled: Value = app.get_json_as(&token, "/orders?status=cancelled").await;
    assert_eq!(cancelled["items"].as_array().expect("items").len(), 1);
    let confirmed: Value = app.get_json_as(&token, "/orders?status=confirmed").await;
    assert_eq!(confirmed["items"].as_array().expect("items").len(), 0);
    assert_problem(
        app.request(Method::GET, "/orders?status=lost", As::Anonymous).bearer_auth(&token).send().await.expect("sent"),
        422,
    )
    .await;
}

#[tokio::test]
async fn invalid_orders_are_422_naming_the_problem() {
    let app = spawn_app().await;
    let euro = app.stocked_product("VAL-EUR", 5, eur(100)).await;
    let dollar = app.stocked_product("VAL-USD", 5, json!({"amount": 100, "currency": "USD"})).await;
    let gone = app.stocked_product("VAL-GONE", 5, eur(100)).await;
    app.request(Method::DELETE, &format!("/products/{}", gone["id"].as_str().expect("an id")), As::Admin)
        .send()
        .await
        .expect("sent");
    let orders = app.db("orders").await;
    eventually(10, || async {
        let rows = orders
            .query_all_raw(Statement::from_string(
                orders.get_database_backend(),
                "SELECT status FROM orders_products WHERE sku = 'VAL-GONE'",
            ))
            .await
            .expect("a query");
        rows.iter().any(|r| r.try_get::<String>("", "status").is_ok_and(|s| s == "discontinued")).then_some(())
    })
    .await;
    let token = customer(&uuid::Uuid::now_v7());
    let unknown = json!(uuid::Uuid::now_v7());
    let cases = [
        (json!({"items": [], "shippingAddress": address()}), "items"),
        (order_body(&[(&euro["id"], 0)]), "items[0].quantity"),
        (order_body(&[(&euro["id"], 1001)]), "items[0].quantity"),
        (order_body(&[(&unknown, 1)]), "items[0].productId"),
        (order_body(&[(&gone["id"], 1)]), "items[0].productId"),
        (order_body(&[(&euro["id"], 1), (&dollar["id"], 1)]), "items"),
        (
            json!({"items": [{"productId": euro["id"], "quantity": 1}], "shippingAddress": {"name": "A"}}),
            "shippingAddress.line1",
        ),
        (json!({"items": [{"productId": euro["id"], "quantity": 1}]}), "shippingAddress"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(app.place(&token, &body).await, 422).await;
        let fields: Vec<&str> =
            problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert!(fields.contains(&field), "{field} in {problem}");
    }
}

#[tokio::test]
async fn a_dispatched_shipment_takes_its_reserved_units_out_of_stock() {
    let app = spawn_app().await;
    let product = app.stocked_product("SHIP-1", 10, eur(100)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let order: Value = app.place(&token, &order_body(&[(&product["id"], 3)])).await.json().await.expect("JSON");
    assert_eq!(app.settled(&token, &order).await["status"], "confirmed");

    // A ShipmentDispatched delivered straight to inventory's queue, twice, as a redelivering bus would.
    let product_id: uuid::Uuid = product["id"].as_str().expect("an id").parse().expect("a UUID");
    let dispatched = shipping_contracts::ShipmentDispatched {
        shipment_id: uuid::Uuid::now_v7(),
        order_id: order["id"].as_str().expect("an id").parse().expect("a UUID"),
        items: vec![orders_contracts::OrderItem { product_id, quantity: contracts::Quantity::new(3).expect("valid") }],
        carrier: "DHL".into(),
        tracking_number: "JD0001".into(),
    };
    let envelope = kernel::Envelope::new(&dispatched).expect("an envelope");
    let inbox = kernel::Inbox::new(kernel::Outbox::new("inventory", app.db("inventory").await));
    for _ in 0..2 {
        inbox.enqueue("inventory", &envelope).await.expect("queued"); // redelivered: one effect
    }
    let stock = eventually(10, || async {
        let stock = app.stock(&product).await;
        (stock["reserved"] == 0).then_some(stock)
    })
    .await;
    assert_eq!((stock["onHand"].as_i64(), stock["available"].as_i64()), (Some(7), Some(7)));
}

#[tokio::test]
async fn stock_cannot_be_set_below_what_is_reserved_and_only_admins_set_it() {
    let app = spawn_app().await;
    let product = app.stocked_product("STOCK-1", 10, eur(100)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let order: Value = app.place(&token, &order_body(&[(&product["id"], 3)])).await.json().await.expect("JSON");
    assert_eq!(app.settled(&token, &order).await["status"], "confirmed");
    let path = format!("/inventory/{}", product["id"].as_str().expect("an id"));
    let set = |on_hand: Value, who: As| app.request(Method::PUT, &path, who).json(&json!({"onHand": on_hand})).send();
    assert_problem(set(json!(2), As::Admin).await.expect("sent"), 409).await;
    assert_eq!(
        assert_problem(set(json!(-1), As::Admin).await.expect("sent"), 422).await["errors"][0]["field"],
        "onHand"
    );
    assert_problem(set(json!(50), As::Customer).await.expect("sent"), 403).await;
    assert_problem(set(json!(50), As::Anonymous).await.expect("sent"), 401).await;
    let unknown = format!("/inventory/{}", uuid::Uuid::now_v7());
    assert_problem(
        app.request(Method::PUT, &unknown, As::Admin).json(&json!({"onHand": 1})).send().await.expect("sent"),
        404,
    )
    .await;
    assert_problem(app.get(&unknown).await, 404).await;
    let stock: Value = set(json!(3), As::Admin).await.expect("sent").json().await.expect("JSON");
    assert_eq!(
        (stock["onHand"].as_i64(), stock["reserved"].as_i64(), stock["available"].as_i64()),
        (Some(3), Some(3), Some(0))
    );
}

/// The fields a 422 names.
async fn fields_of(response: reqwest::Response) -> Vec<String> {
    let problem = assert_problem(response, 422).await;
    let errors = problem["errors"].as_array().expect("errors");
    errors.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn quantities_beyond_the_configured_caps_are_422_naming_the_line_or_the_items() {
    let app = spawn_app_with(&[("orders.max_quantity_per_line", "5"), ("orders.max_quantity_per_order", "8")]).await;
    let mug = app.stocked_product("CAP-MUG", 100, eur(100)).await;
    let pot = app.stocked_product("CAP-POT", 100, eur(100)).await;
    let token = customer(&uuid::Uuid::now_v7());

    assert_eq!(fields_of(app.place(&token, &order_body(&[(&mug["id"], 6)])).await).await, ["items[0].quantity"]);
    // Two lines of one product count together against the per-line cap: the second crosses it.
    let split = order_body(&[(&mug["id"], 3), (&pot["id"], 1), (&mug["id"], 3)]);
    assert_eq!(fields_of(app.place(&token, &split).await).await, ["items[2].quantity"]);
    // Every line within its cap, the order beyond its own.
    let big = order_body(&[(&mug["id"], 5), (&pot["id"], 4)]);
    assert_eq!(fields_of(app.place(&token, &big).await).await, ["items"]);

    // At the caps exactly: placed.
    assert_eq!(app.place(&token, &order_body(&[(&mug["id"], 5), (&pot["id"], 3)])).await.status(), 201);
    assert_eq!(app.place(&token, &order_body(&[(&mug["id"], 2), (&mug["id"], 3)])).await.status(), 201);
}

/// An `Idempotency-Key` is compared exactly, on every engine (MariaDB's default collation would
/// replay the first order for the second key).
async fn idempotency_keys_that_differ_only_in_case_are_two_orders(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.stocked_product("IDEM-CASE", 100, eur(500)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let body = order_body(&[(&product["id"], 1)]);
    let mut ids = Vec::new();
    for key in ["Key-1", "key-1", "Key-1"] {
        let sent =
            app.request(Method::POST, "/orders", As::Anonymous).bearer_auth(&token).header("Idempotency-Key", key);
        let response = sent.json(&body).send().await.expect("sent");
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.expect("JSON")["id"].clone());
    }
    assert_ne!(ids[0], ids[1], "two keys, two orders");
    assert_eq!(ids[0], ids[2], "the same key again replays the first");
}

/// Issue 14 item 13: an `Idempotency-Key` is remembered for `housekeeping.retention_hours`, then
/// housekeeping forgets it and the same key places a new order.
#[tokio::test]
async fn housekeeping_forgets_idempotency_keys_past_the_retention() {
    let app = crate::helpers::spawn_app_with(&[("housekeeping.interval_secs", "1")]).await;
    let product = app.stocked_product("IDEM-OLD", 100, eur(500)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let body = order_body(&[(&product["id"], 1)]);
    let place = || {
        app.request(Method::POST, "/orders", As::Anonymous)
            .bearer_auth(&token)
            .header("Idempotency-Key", "old-key")
            .json(&body)
            .send()
    };
    let first: Value = place().await.expect("sent").json().await.expect("JSON");
    let db = app.db("orders").await;
    db.execute_unprepared("UPDATE orders_idempotency SET created_at = '2000-01-01 00:00:00'").await.expect("aged");
    let count = || {
        let db = db.clone();
        async move {
            let sql = "SELECT COUNT(*) FROM orders_idempotency";
            let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await;
            row.expect("counted").expect("a row").try_get_by_index::<i64>(0).expect("a count")
        }
    };
    crate::helpers::settles(0, count).await;
    let second: Value = place().await.expect("sent").json().await.expect("JSON");
    assert_ne!(second["id"], first["id"], "a forgotten key places a new order");
}
