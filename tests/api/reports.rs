//! Sales reports (`/admin/reports`): asked for by an admin, computed by the orders module's
//! `sales_report` job, downloaded as CSV whose figures are the orders placed — sales only.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use serde_json::{Value, json};

use crate::engines::{Engine, on_every_engine};
use crate::helpers::{As, TestApp, assert_problem, eventually, spawn_app, spawn_app_on};
use crate::orders::{customer, eur, order_body};

// The report's reads (keyset on the id, ranges of instants) and writes on each engine.
on_every_engine!(a_sales_report_adds_up_the_confirmed_orders_by_day_and_by_product);

impl TestApp {
    /// `POST /admin/reports/sales` as `who`.
    async fn ask_report(&self, who: As, body: &Value) -> reqwest::Response {
        self.request(Method::POST, "/admin/reports/sales", who).json(body).send().await.expect("sent")
    }

    /// Asks for a report and waits until it is done; returns its status and its CSV response.
    async fn done_report(&self, body: &Value) -> (Value, reqwest::Response) {
        let response = self.ask_report(As::Admin, body).await;
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        let location = response.headers()["location"].to_str().expect("a location").to_owned();
        let queued: Value = response.json().await.expect("JSON");
        assert_eq!(location, format!("/admin/reports/{}", queued["id"].as_str().expect("an id")));
        assert_eq!((queued["kind"].as_str(), queued["groupBy"].as_str()), (Some("sales"), body["groupBy"].as_str()));
        let report = eventually(30, || async {
            let report: Value =
                self.request(Method::GET, &location, As::Admin).send().await.expect("sent").json().await.expect("JSON");
            assert_ne!(report["status"], "failed", "{report}");
            (report["status"] == "done").then_some(report)
        })
        .await;
        let download =
            self.request(Method::GET, &format!("{location}/download"), As::Admin).send().await.expect("sent");
        (report, download)
    }

    /// Moves the order's confirmation to `at` in the orders module's database.
    async fn confirmed_at(&self, order: &Value, at: DateTime<Utc>) {
        let id: uuid::Uuid = order["id"].as_str().expect("an id").parse().expect("a UUID");
        let update = Query::update()
            .table(Alias::new("orders_orders"))
            .value("confirmed_at", at)
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        let changed = self.db("orders").await.execute(&update).await.expect("the orders database");
        assert_eq!(changed.rows_affected(), 1);
    }
}

/// The CSV's rows, header included, split on commas (the test's names hold none).
async fn rows(download: reqwest::Response) -> Vec<Vec<String>> {
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "text/csv; charset=utf-8");
    let body = download.text().await.expect("text");
    body.lines().map(|line| line.split(',').map(str::to_owned).collect()).collect()
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

async fn a_sales_report_adds_up_the_confirmed_orders_by_day_and_by_product(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let (a, b) =
        (app.stocked_product("REP-A", 100, eur(250)).await, app.stocked_product("REP-B", 100, eur(1000)).await);
    let usd = app.stocked_product("REP-U", 100, json!({"amount": 700, "currency": "USD"})).await;
    let scarce = app.stocked_product("REP-SCARCE", 1, eur(50)).await;
    let token = customer(&uuid::Uuid::now_v7());
    let mut placed = Vec::new();
    for items in [
        vec![(&a["id"], 2)],
        vec![(&a["id"], 1), (&b["id"], 3)],
        vec![(&b["id"], 1)],
        vec![(&usd["id"], 2)],
        vec![(&a["id"], 7)],      // cancelled below
        vec![(&scarce["id"], 2)], // beyond the stock: rejected
    ] {
        let response = app.place(&token, &order_body(&items)).await;
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.expect("JSON");
        placed.push(app.settled(&token, &order).await);
    }
    let statuses: Vec<&str> = placed.iter().map(|o| o["status"].as_str().unwrap_or_default()).collect();
    assert_eq!(statuses, ["confirmed", "confirmed", "confirmed", "confirmed", "confirmed", "rejected"]);
    assert_eq!(app.cancel(&token, &placed[4]).await.status(), 202);
    app.order_until(&token, &placed[4], "cancelled").await;

    // Two days in the past: every order confirmed on the later one but the third, on the earlier.
    let today = Utc::now().date_naive();
    let (earlier, later) = (today - Duration::days(2), today - Duration::days(1));
    let noon = |d: NaiveDate| d.and_hms_opt(12, 0, 0).expect("noon").and_utc();
    for (i, order) in placed.iter().enumerate() {
        // The cancelled and rejected ones too: only their status keeps them out.
        app.confirmed_at(order, noon(if i == 2 { earlier } else { later })).await;
    }

    let range =
        |group_by: &str| json!({"from": day(earlier), "to": day(today + Duration::days(1)), "groupBy": group_by});
    let (report, download) = app.done_report(&range("day")).await;
    assert_eq!(report["rowCount"], 3);
    assert!(report["finishedAt"].is_string() && report.get("error").is_none(), "{report}");
    assert_eq!(report["from"], format!("{}T00:00:00Z", day(earlier)));
    let disposition = download.headers()["content-disposition"].to_str().expect("ASCII").to_owned();
    let file = format!("sales-{}-{}-day.csv", day(earlier), day(today + Duration::days(1)));
    assert_eq!(disposition, format!("attachment; filename=\"{file}\""));
    assert_eq!(
        rows(download).await,
        [
            vec!["day", "currency", "orders", "units", "revenue"],
            vec![&day(earlier), "EUR", "1", "1", "1000"],
            vec![&day(later), "EUR", "2", "6", "3750"],
            vec![&day(later), "USD", "1", "2", "1400"],
        ]
    );

    let (report, download) = app.done_report(&range("product")).await;
    assert_eq!(report["rowCount"], 3);
    let id = |p: &Value| p["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        rows(download).await,
        [
            vec!["product_id", "sku", "name", "currency", "orders", "units", "revenue"],
            vec![&id(&a), "REP-A", "REP-A", "EUR", "2", "3", "750"],
            vec![&id(&b), "REP-B", "REP-B", "EUR", "2", "4", "4000"],
            vec![&id(&usd), "REP-U", "REP-U", "USD", "1", "2", "1400"],
        ]
    );

    // `to` excludes: the later day alone, its instants as given.
    let later_only = json!({"from": format!("{}T00:00:00Z", day(later)), "to": format!("{}T00:00:00+00:00", day(today)), "groupBy": "day"});
    let (_, download) = app.done_report(&later_only).await;
    let rows = rows(download).await;
    assert_eq!(rows.iter().skip(1).map(|r| r[0].as_str()).collect::<Vec<_>>(), [day(later), day(later)]);

    let listed = app.get_json("/admin/reports?limit=2", As::Admin).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[0]["from"], format!("{}T00:00:00Z", day(later)), "newest first");
}

#[tokio::test]
async fn an_invalid_report_request_is_a_422_naming_each_field() {
    let app = spawn_app().await;
    for (body, fields) in [
        (json!({"from": "2026-02-01", "to": "2026-02-01", "groupBy": "day"}), vec!["to"]),
        (json!({"from": "2026-03-01", "to": "2026-02-01", "groupBy": "day"}), vec!["to"]),
        (json!({"from": "2025-01-01", "to": "2026-01-03", "groupBy": "day"}), vec!["to"]),
        (json!({"from": "2026-01-01", "to": "2026-02-01", "groupBy": "week"}), vec!["groupBy"]),
        (json!({"from": "yesterday", "to": "2026-02-01T25:00:00Z"}), vec!["from", "to", "groupBy"]),
    ] {
        let problem = assert_problem(app.ask_report(As::Admin, &body).await, 422).await;
        let named: Vec<&str> =
            problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert_eq!(named, fields, "{body}: {problem}");
    }
    let a_year_and_a_day = json!({"from": "2024-01-01", "to": "2025-01-01T00:00:00Z", "groupBy": "product"});
    assert_eq!(app.ask_report(As::Admin, &a_year_and_a_day).await.status(), 202, "366 days (a leap year) fit");
}

#[tokio::test]
async fn reports_are_for_admins_only() {
    let app = spawn_app().await;
    let body = json!({"from": "2026-01-01", "to": "2026-02-01", "groupBy": "day"});
    assert_problem(app.ask_report(As::Anonymous, &body).await, 401).await;
    assert_problem(app.ask_report(As::Customer, &body).await, 403).await;
    let response = app.ask_report(As::Admin, &body).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().expect("a location").to_owned();
    for path in [location.clone(), format!("{location}/download"), "/admin/reports".to_owned()] {
        assert_problem(app.request(Method::GET, &path, As::Anonymous).send().await.expect("sent"), 401).await;
        assert_problem(app.request(Method::GET, &path, As::Customer).send().await.expect("sent"), 403).await;
    }
}

#[tokio::test]
async fn an_unknown_report_is_a_404_and_one_not_done_a_409() {
    let app = spawn_app().await;
    let unknown = uuid::Uuid::now_v7();
    for path in [format!("/admin/reports/{unknown}"), format!("/admin/reports/{unknown}/download")] {
        assert_problem(app.request(Method::GET, &path, As::Admin).send().await.expect("sent"), 404).await;
    }
    // Rows as their job leaves them, written straight away: a worker would finish a real one
    // before the test could look.
    let db = app.db("orders").await;
    let mut ids = Vec::new();
    for (status, error) in [("queued", None), ("running", None), ("failed", Some("orders_orders 1: no currency"))] {
        let id = uuid::Uuid::now_v7();
        let insert = Query::insert()
            .into_table(Alias::new("orders_reports"))
            .columns([
                "id",
                "kind",
                "range_from",
                "range_to",
                "group_by",
                "status",
                "requested_by",
                "requested_at",
                "error",
            ])
            .values_panic([
                id.into(),
                "sales".into(),
                "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().expect("an instant").into(),
                "2026-02-01T00:00:00Z".parse::<DateTime<Utc>>().expect("an instant").into(),
                "day".into(),
                status.into(),
                uuid::Uuid::now_v7().into(),
                Utc::now().into(),
                error.into(),
            ])
            .to_owned();
        db.execute(&insert).await.expect("the orders database");
        ids.push(id);
    }
    for (id, retry_after) in ids.iter().zip([Some("1"), Some("1"), None]) {
        let status = app.get_json(&format!("/admin/reports/{id}"), As::Admin).await;
        let response =
            app.request(Method::GET, &format!("/admin/reports/{id}/download"), As::Admin).send().await.expect("sent");
        let header = response.headers().get("retry-after").map(|v| v.to_str().expect("ASCII").to_owned());
        assert_eq!(header.as_deref(), retry_after, "{status}");
        let problem = assert_problem(response, 409).await;
        if status["status"] == "failed" {
            assert_eq!(status["error"], "orders_orders 1: no currency");
            assert!(problem["detail"].as_str().is_some_and(|d| d.contains("no currency")), "{problem}");
        }
    }
}
