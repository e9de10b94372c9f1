//! The web console (`/ui/`) in a real headless Chromium: each test starts a cloud-sim in its own
//! loopback block, drives the page over WebDriver and checks the outcome through the API.
//! Reads of the page go through one script each (`Browser::js`), so that a view re-rendering
//! between two WebDriver calls cannot hand the test a stale element.

mod browser;
#[path = "../support/net.rs"]
mod net;

use std::collections::HashMap;
use std::time::Instant;

use cloud_api::{CreateInstanceRequest, CreateLoadBalancerRequest, InstanceState, Tags, ZoneState};
use cloud_client::{Client, InstanceFilter, PageRequest, RetryPolicy};
use cloud_sim::config::Principal;
use cloud_sim::{Config, Server};
use fantoccini::key::Key;
use futures_util::StreamExt;
use serde_json::json;
use sim_common::wait_for;

use browser::{Browser, T};

struct Cloud {
    server: Server,
    client: Client,
}

impl Cloud {
    async fn start(config: Config) -> Self {
        let server = Server::start_in_memory(config)
            .await
            .expect("start cloud-sim");
        let client = Client::builder(server.base_url())
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        Self { server, client }
    }

    fn console(&self, view: &str) -> String {
        format!("{}/ui/#/{view}", self.server.base_url())
    }

    async fn instance(&self, name: &str, zone: &str, tags: &[(&str, &str)]) -> cloud_api::Instance {
        let tags: Tags = tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        self.client
            .create_instance(&CreateInstanceRequest {
                name: name.into(),
                zone: zone.into(),
                instance_type: "sim.small".into(),
                tags,
                private_ip: None,
            })
            .await
            .expect("create instance")
    }

    async fn state(&self, id: &str) -> InstanceState {
        self.client
            .get_instance(id)
            .await
            .unwrap()
            .expect("instance exists")
            .state
    }
}

/// Every form control on the page that has no accessible name (label, aria-label or text).
const UNLABELLED: &str = "return [...document.querySelectorAll('input, select, button, a[href]')]
    .filter(e => !e.closest('[hidden]') && !(e.labels && e.labels.length)
        && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML.slice(0, 80));";

async fn assert_all_labelled(b: &Browser, view: &str) {
    let unlabelled = b.js(UNLABELLED, vec![]).await;
    assert_eq!(unlabelled, json!([]), "controls without a name on {view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_three_zones_and_an_outage_set_from_it() {
    let c = Cloud::start(Config::for_tests_isolated()).await;
    for (name, zone) in [("a1", "zone-a"), ("b1", "zone-b"), ("b2", "zone-b")] {
        c.instance(name, zone, &[]).await;
    }
    let b = Browser::start().await;
    b.goto(&c.console("overview")).await;
    let zones = b
        .wait_js(
            "three zone cards",
            "const z = [...document.querySelectorAll('section.zone')].map(e => e.dataset.zone);
             return z.length === 3 ? z : null;",
        )
        .await;
    assert_eq!(zones, json!(["zone-a", "zone-b", "zone-c"]));
    assert_eq!(b.text("[data-zone='zone-b'] dd.instances").await, "2");
    assert_eq!(b.text("[data-zone='zone-c'] dd.instances").await, "0");
    assert!(
        b.text("[data-zone='zone-b'] .zone-state")
            .await
            .contains("available")
    );
    assert_all_labelled(&b, "overview").await;

    // Cancelling the confirmation changes nothing.
    b.select("#set-zone-c", "impaired").await;
    b.click("[data-zone='zone-c'] button.set-state").await;
    b.wait_js(
        "the confirmation",
        "return document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm button[value='cancel']").await;
    b.wait_js(
        "the dialog to close",
        "return !document.getElementById('confirm').open",
    )
    .await;
    let zone_c = c.client.get_zone("zone-c").await.unwrap().unwrap();
    assert_eq!(zone_c.state, ZoneState::Available);

    // Confirming sets the state through the API, and the overview shows it.
    b.select("#set-zone-b", "outage").await;
    b.click("[data-zone='zone-b'] button.set-state").await;
    b.wait_js(
        "the confirmation",
        "return document.getElementById('confirm').open",
    )
    .await;
    assert!(b.text("#confirm-title").await.contains("zone-b to outage"));
    b.click("#confirm-ok").await;
    wait_for("zone-b in outage through the API", T, || async {
        let z = c.client.get_zone("zone-b").await.unwrap().unwrap();
        (z.state == ZoneState::Outage).then_some(())
    })
    .await;
    b.wait_js(
        "the outage on the overview",
        "return document.querySelector(\"[data-zone='zone-b'] .zone-state\").textContent.includes('outage')",
    )
    .await;
    // Not by colour alone: the badge carries the word and a symbol.
    let badge = b.text("[data-zone='zone-b'] .zone-state").await;
    assert_eq!(badge, "✖ outage");
    b.screenshot_page("overview").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_filter_sort_and_stop_from_the_keyboard_through_the_api() {
    let c = Cloud::start(Config::for_tests_isolated()).await;
    let web1 = c.instance("web-1", "zone-a", &[("app", "web")]).await;
    c.instance("web-2", "zone-b", &[("app", "web")]).await;
    c.instance("web-3", "zone-c", &[("app", "web")]).await;
    let db1 = c.instance("db-1", "zone-a", &[("app", "db")]).await;
    for i in [&web1, &db1] {
        wait_for("running", T, || async {
            (c.state(i.id.as_str()).await == InstanceState::Running).then_some(())
        })
        .await;
    }
    let b = Browser::start().await;
    b.goto(&c.console("instances")).await;
    const NAMES: &str = "const rows = [...document.querySelectorAll('main tbody tr')];
        return rows.map(r => r.dataset.name).join(',');";
    let wait_names = |want: &'static str| {
        let b = &b;
        async move {
            wait_for(&format!("rows {want}"), T, || async {
                (b.js(NAMES, vec![]).await == want).then_some(())
            })
            .await
        }
    };
    wait_names("web-1,web-2,web-3,db-1").await;
    assert_all_labelled(&b, "instances").await;

    b.select("#f-zone", "zone-a").await;
    b.click("form.filters button[type='submit']").await;
    wait_names("web-1,db-1").await;
    b.select("#f-zone", "").await;
    b.type_into("#f-tag", "app=web").await;
    b.click("form.filters button[type='submit']").await;
    wait_names("web-1,web-2,web-3").await;
    // Sorting by name: ascending, then descending.
    b.click("th button.sort").await;
    b.click("th button.sort").await;
    wait_names("web-3,web-2,web-1").await;
    assert_eq!(
        b.js("return document.querySelector('th[aria-sort]:not([aria-sort=\"none\"])').getAttribute('aria-sort')", vec![]).await,
        "descending"
    );

    // Stop web-1 with the keyboard alone: focus its button, press Enter.
    b.js(
        "document.querySelector('button[aria-label=\"Stop web-1\"]').focus()",
        vec![],
    )
    .await;
    let focused = b.client.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Stop");
    focused.send_keys(&Key::Enter.to_string()).await.unwrap();
    wait_for("web-1 stopped through the API", T, || async {
        matches!(
            c.state(web1.id.as_str()).await,
            InstanceState::Stopping | InstanceState::Stopped
        )
        .then_some(())
    })
    .await;
    assert_eq!(c.state(db1.id.as_str()).await, InstanceState::Running);
    wait_for("the table to show web-1 stopped", T, || async {
        b.click("#refresh").await;
        let state = b
            .text(&format!("tr[data-id='{}'] .instance-state", web1.id))
            .await;
        state.contains("stopped").then_some(())
    })
    .await;

    // The event log shows it, live, and filters by resource.
    b.goto(&c.console("events")).await;
    b.wait_js(
        "the events table",
        "return document.querySelectorAll('table.events tbody tr').length > 0",
    )
    .await;
    assert_all_labelled(&b, "events").await;
    b.type_into("#e-id", web1.id.as_str()).await;
    c.client.start_instance(web1.id.as_str()).await.unwrap();
    let shown = b
        .wait_js(
            "web-1's start in the live event log",
            "const rows = [...document.querySelectorAll('table.events tbody tr')];
             const text = rows.map(r => r.textContent);
             return text.some(t => t.includes('running')) ? text : null;",
        )
        .await;
    for row in shown.as_array().unwrap() {
        assert!(
            row.as_str().unwrap().contains(web1.id.as_str()),
            "the filter lets only web-1's events through: {row}"
        );
    }
    b.close().await;
}

/// Backends in zone-a and zone-b only, frontends in all three zones: zone-c's clients must cross
/// zones, so two connections through each frontend give an in-zone fraction of 4/6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_through_a_load_balancer_shows_in_the_matrix_with_its_in_zone_fraction() {
    let c = Cloud::start(Config::for_tests_isolated()).await;
    let (port, backend_port) = (net::port(), net::port());
    let mut servers = Vec::new();
    let mut backends = Vec::new();
    for (name, zone) in [("a1", "zone-a"), ("b1", "zone-b")] {
        let i = c.instance(name, zone, &[]).await;
        servers.push(net::backend(i.private_ip, backend_port, name).await);
        backends.push(i);
    }
    // a1 is listed on the load balancer, b1 is a member of its backend group: the page shows both.
    let group = c
        .client
        .create_backend_group(&cloud_api::CreateBackendGroupRequest {
            name: "pool-b".into(),
            zone: "zone-b".into(),
            members: vec![backends[1].id.clone()],
            tags: Default::default(),
        })
        .await
        .unwrap();
    let lb = c
        .client
        .create_load_balancer(&CreateLoadBalancerRequest {
            zones: Some(vec!["zone-a".into(), "zone-b".into(), "zone-c".into()]),
            backend_groups: vec![group.id.clone()],
            ..net::tcp_lb("web", port, backend_port, &[&backends[0]])
        })
        .await
        .unwrap();
    let id = lb.id.to_string();
    wait_for("healthy backends", T, || async {
        let r = c.client.load_balancer_traffic(&id).await.unwrap()?;
        (r.backends.len() == 2 && r.backends.iter().all(|b| b.healthy)).then_some(())
    })
    .await;

    let b = Browser::start().await;
    b.goto(&c.console(&format!("traffic/{id}"))).await;
    b.wait_js(
        "the empty matrix",
        "return document.querySelector('dl.traffic-summary dd.total')?.textContent === '0'",
    )
    .await;
    assert_all_labelled(&b, "traffic").await;
    // Two rounds of one connection through each frontend; the second once the page shows the
    // first, so that the chart has two moments to plot.
    for round in 1..=2 {
        for f in &lb.frontends {
            let answer = net::ask(f.ip, port).await;
            assert!(answer.is_some(), "no answer through {}", f.zone);
        }
        if round == 1 {
            b.wait_js(
                "the first round in the summary",
                "return document.querySelector('dl.traffic-summary dd.total').textContent === '3'",
            )
            .await;
        }
    }
    let sent = Instant::now();
    let fraction = b
        .wait_js(
            "six connections in the matrix",
            "return document.querySelector('dl.traffic-summary dd.total').textContent === '6'
                 && document.querySelector('dl.traffic-summary dd.in-zone').textContent;",
        )
        .await;
    let shown_after = sent.elapsed();
    assert_eq!(fraction, "66.7%");
    let report = c.client.load_balancer_traffic(&id).await.unwrap().unwrap();
    let api_fraction = report.in_zone_fraction.expect("traffic was sent");
    assert!((api_fraction - 4.0 / 6.0).abs() < 1e-9, "{api_fraction}");
    let cells = b
        .js(
            "const out = {};
             for (const td of document.querySelectorAll('table.matrix td'))
                 out[td.closest('tr').dataset.from + '>' + td.dataset.to] = Number(td.dataset.connections);
             return out;",
            vec![],
        )
        .await;
    let cells: HashMap<String, u64> = serde_json::from_value(cells).unwrap();
    assert_eq!(cells.get("zone-a>zone-a"), Some(&2), "{cells:?}");
    assert_eq!(cells.get("zone-b>zone-b"), Some(&2), "{cells:?}");
    assert_eq!(cells.get("zone-a>zone-b"), Some(&0), "{cells:?}");
    let from_c: u64 = cells
        .iter()
        .filter(|(k, _)| k.starts_with("zone-c>"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(from_c, 2, "zone-c's clients went elsewhere: {cells:?}");
    // The chart plots the last 10 s of connections: 4 of 6 in zone, as a line.
    let chart = b
        .wait_js(
            "the in-zone chart's line",
            "const svg = document.querySelector('svg.chart');
             return svg.querySelector('polyline') !== null && svg.getAttribute('aria-label');",
        )
        .await;
    assert!(chart.as_str().unwrap().contains("now 66.7%"), "{chart}");
    let per_backend = b
        .js(
            "return [...document.querySelectorAll('table.backend-load tbody tr')].length",
            vec![],
        )
        .await;
    assert_eq!(per_backend, 2);
    println!("console: traffic shown in the matrix {shown_after:?} after it was sent");
    b.screenshot_page("traffic").await;

    // The load balancer's page: one card per zonal frontend, backends grouped by zone.
    b.goto(&c.console(&format!("load-balancers/{id}"))).await;
    let layout = b
        .wait_js(
            "frontend cards and backend zones",
            "const f = [...document.querySelectorAll('section.frontend')].map(e => e.dataset.zone);
             const z = [...document.querySelectorAll('section.backend-zone')].map(e =>
                 e.dataset.zone + ':' + e.querySelectorAll('tbody tr').length);
             return f.length ? {frontends: f, backends: z} : null;",
        )
        .await;
    assert_eq!(
        layout,
        json!({"frontends": ["zone-a", "zone-b", "zone-c"], "backends": ["zone-a:1", "zone-b:1", "zone-c:0"]})
    );
    assert!(
        b.text("section.backend-zone[data-zone='zone-a'] tbody")
            .await
            .contains("healthy")
    );
    assert_eq!(
        b.text("dd.groups").await,
        "pool-b (zone-b, 1 member)",
        "the backend group is named with its zone and size"
    );
    b.screenshot_page("load-balancer").await;
    b.close().await;
    drop(servers);
}

fn with_tokens(mut config: Config) -> Config {
    let principal = |admin| Principal {
        project: "team-a".into(),
        admin,
    };
    config.tokens = Some(HashMap::from([
        ("admin-secret".to_owned(), principal(true)),
        ("viewer-secret".to_owned(), principal(false)),
        (
            "other-team-secret".to_owned(),
            Principal {
                project: "team-b".into(),
                admin: false,
            },
        ),
    ]));
    config
}

/// A client of `c` with `token`.
fn client_with(c: &Cloud, token: &str) -> Client {
    Client::builder(c.server.base_url())
        .token(token)
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

async fn sign_in(b: &Browser, token: &str) {
    b.wait_js(
        "the sign-in form",
        "return document.getElementById('token') !== null",
    )
    .await;
    b.type_into("#token", token).await;
    b.click(".login button[type='submit']").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_admin_token_sees_no_admin_controls_and_gets_403_if_it_tries() {
    let c = Cloud::start(with_tokens(Config::for_tests_isolated())).await;
    // One instance in the viewer's project, one in another's.
    let req = |name: &str| CreateInstanceRequest {
        name: name.into(),
        zone: "zone-a".into(),
        instance_type: "sim.small".into(),
        tags: Tags::new(),
        private_ip: None,
    };
    client_with(&c, "viewer-secret")
        .create_instance(&req("ours"))
        .await
        .unwrap();
    client_with(&c, "other-team-secret")
        .create_instance(&req("theirs"))
        .await
        .unwrap();
    let b = Browser::start().await;
    b.goto(&c.console("overview")).await;
    sign_in(&b, "not-a-token").await;
    b.wait_js(
        "the refusal",
        "return document.querySelector('.login .alert')?.textContent.includes('not accepted')",
    )
    .await;
    sign_in(&b, "viewer-secret").await;
    b.wait_js(
        "the overview",
        "return document.querySelectorAll('section.zone').length === 3",
    )
    .await;
    assert!(b.text("#who").await.contains("team-a"));
    assert!(!b.text("#who").await.contains("admin"));
    // Only the token's project: its one instance, counted and listed; not team-b's.
    assert_eq!(b.text("[data-zone='zone-a'] dd.instances").await, "1");
    b.goto(&c.console("instances")).await;
    let names = b
        .wait_js(
            "the instances of team-a",
            "const rows = [...document.querySelectorAll('main tbody tr')];
             return rows.length ? rows.map(r => r.dataset.name).join(',') : null;",
        )
        .await;
    assert_eq!(names, "ours");
    let visible_admin = b
        .js(
            "return [...document.querySelectorAll('[data-admin], button.set-state, select[id^=set-]')]
                 .filter(e => e.offsetParent !== null).length",
            vec![],
        )
        .await;
    assert_eq!(visible_admin, 0, "admin controls shown to a viewer");
    // Trying anyway: the faults page shows the API's refusal.
    b.goto(&c.console("faults")).await;
    let refusal = b
        .wait_js(
            "the refusal of the faults page",
            "return document.querySelector('main .alert')?.textContent",
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap()
            .starts_with("403 PERMISSION_DENIED"),
        "{refusal}"
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('main form').length",
            vec![]
        )
        .await,
        0,
        "no fault form for a viewer"
    );
    // The token is in no URL the page went to.
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains("secret"), "{url}");
    let urls = b
        .js(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await;
    assert!(!urls.to_string().contains("secret"), "{urls}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_and_removes_a_fault_rule_from_the_console() {
    let c = Cloud::start(with_tokens(Config::for_tests_isolated())).await;
    let b = Browser::start().await;
    b.goto(&c.console("faults")).await;
    sign_in(&b, "admin-secret").await;
    b.wait_js(
        "the faults page",
        "return document.querySelector('#add-fault') !== null",
    )
    .await;
    assert!(b.text("#who").await.contains("admin"));
    assert_all_labelled(&b, "faults").await;
    b.select("#fx-type", "latency").await;
    b.type_into("#fx-path", "/v1/instances").await;
    b.select("#fx-method", "POST").await;
    b.click("form[aria-labelledby='add-fault'] button[type='submit']")
        .await;
    let admin = client_with(&c, "admin-secret");
    let rules = wait_for("the rule through the API", T, || async {
        let rules = admin.list_faults().await.unwrap();
        (!rules.is_empty()).then_some(rules)
    })
    .await;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].method.as_deref(), Some("POST"));
    assert_eq!(rules[0].path_prefix.as_deref(), Some("/v1/instances"));
    assert_eq!(
        rules[0].effect,
        cloud_api::FaultEffect::Latency { millis: 200 }
    );
    let id = &rules[0].id;
    b.click(&format!("button[aria-label='Remove fault {id}']"))
        .await;
    wait_for("the rule gone", T, || async {
        admin.list_faults().await.unwrap().is_empty().then_some(())
    })
    .await;
    b.close().await;
}

/// 5,000 instances and 200 load balancers: every view still renders, pages and refreshes.
/// Prints the time to first render and to a refresh, measured from WebDriver (navigation or
/// click until the content is on the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_stays_responsive_with_5000_instances_and_200_load_balancers() {
    const INSTANCES: usize = 5_000;
    const LBS: usize = 200;
    let mut config = big_config();
    config.data_plane = false;
    let c = Cloud::start(config).await;
    let zones = ["zone-a", "zone-b", "zone-c"];
    let started = Instant::now();
    let ids: Vec<_> = futures_util::stream::iter(0..INSTANCES)
        .map(|n| {
            let c = &c;
            async move {
                c.instance(&format!("node-{n:05}"), zones[n % 3], &[("pool", "p")])
                    .await
                    .id
            }
        })
        .buffered(8)
        .collect()
        .await;
    let lbs: Vec<_> = futures_util::stream::iter(0..LBS)
        .map(|n| {
            let (c, ids) = (&c, &ids);
            async move {
                c.client
                    .create_load_balancer(&CreateLoadBalancerRequest {
                        backends: (0..3)
                            .map(|k| ids[(n * 3 + k) % ids.len()].clone())
                            .collect(),
                        health_check: Default::default(),
                        ..net::tcp_lb(&format!("svc-{n:03}"), 80, 30_000 + n as u16, &[])
                    })
                    .await
                    .expect("create load balancer")
            }
        })
        .buffered(8)
        .collect()
        .await;
    println!(
        "console: created {INSTANCES} instances and {LBS} load balancers in {:?}",
        started.elapsed()
    );

    let b = Browser::start().await;
    // Warm the browser (first start of the renderer), then measure.
    b.goto(&format!("{}/ui/", c.server.base_url())).await;
    b.wait_js(
        "the console",
        "return document.querySelectorAll('section.zone').length === 3",
    )
    .await;
    b.goto("about:blank").await;

    let t = Instant::now();
    b.goto(&c.console("overview")).await;
    let total = b
        .wait_js(
            "the overview's counts",
            "const n = [...document.querySelectorAll('section.zone dd.instances')].map(e => Number(e.textContent));
             return n.length === 3 ? n.reduce((a, b) => a + b) : null;",
        )
        .await;
    let overview = t.elapsed();
    assert_eq!(total, INSTANCES);

    // What the first two pages hold, in the API's (creation) order.
    let names = |token: Option<String>| {
        let c = &c;
        async move {
            let page = c
                .client
                .list_instances(
                    &InstanceFilter::default(),
                    &PageRequest {
                        page_size: Some(100),
                        page_token: token,
                    },
                )
                .await
                .unwrap();
            let names: Vec<String> = page.items.into_iter().map(|i| i.name).collect();
            (names, page.next_page_token)
        }
    };
    let (page1, token) = names(None).await;
    let (page2, _) = names(token).await;
    let first_name = |want: &str| {
        format!(
            "return document.querySelectorAll('main tbody tr').length === 100
                 && document.querySelector('main tbody tr').dataset.name === '{want}'"
        )
    };
    let t = Instant::now();
    b.goto(&c.console("instances")).await;
    b.wait_js("the first page of instances", &first_name(&page1[0]))
        .await;
    let instances_first = t.elapsed();
    let t = Instant::now();
    b.js(
        "document.querySelector('main tbody').replaceChildren()",
        vec![],
    )
    .await;
    b.click("#refresh").await;
    b.wait_js("the refreshed page", &first_name(&page1[0]))
        .await;
    let instances_refresh = t.elapsed();
    let t = Instant::now();
    b.click(".pager button:nth-child(2)").await;
    b.wait_js("the second page", &first_name(&page2[0])).await;
    let instances_next = t.elapsed();
    // The page stays interactive: sorting 100 rows is immediate.
    let t = Instant::now();
    b.click("th button.sort").await;
    b.click("th button.sort").await;
    b.wait_js(
        "sorted descending",
        &first_name(page2.iter().max().expect("a full page")),
    )
    .await;
    let sort = t.elapsed();

    let t = Instant::now();
    b.goto(&c.console("load-balancers")).await;
    b.wait_js(
        "the first page of load balancers",
        "return document.querySelectorAll('main tbody tr').length === 50",
    )
    .await;
    let lbs_first = t.elapsed();
    let t = Instant::now();
    b.goto(&c.console(&format!("traffic/{}", lbs[LBS - 1].id)))
        .await;
    b.wait_js(
        "the traffic view with every load balancer to pick",
        &format!(
            "return document.querySelectorAll('#lb-pick option').length === {}",
            LBS + 1
        ),
    )
    .await;
    let traffic_first = t.elapsed();
    let t = Instant::now();
    b.goto(&c.console("events")).await;
    b.wait_js(
        "the newest events",
        "return document.querySelectorAll('table.events tbody tr').length === 100",
    )
    .await;
    let events_first = t.elapsed();
    println!(
        "console at {INSTANCES} instances, {LBS} load balancers: overview {overview:?}, \
         instances first page {instances_first:?}, refresh {instances_refresh:?}, next page \
         {instances_next:?}, sort twice {sort:?}, load balancers {lbs_first:?}, traffic view \
         {traffic_first:?}, events {events_first:?}"
    );
    b.close().await;
}

/// An isolated block with room for 5,000 instances: /18 instance subnets, /24 pools.
fn big_config() -> Config {
    let small = Config::for_tests_isolated();
    let block = small.zones[0].instance_subnet.addr().octets()[1];
    let zones = ["zone-a", "zone-b", "zone-c"].map(String::from).to_vec();
    let net = |third: u8, len: u8| format!("127.{block}.{third}.0/{len}").parse().unwrap();
    let subnets: Vec<_> = (0..3)
        .map(|n| (zones[n].clone(), net(64 * n as u8, 18)))
        .collect();
    let pools: Vec<_> = (0..3)
        .map(|n| (zones[n].clone(), net(192 + n as u8, 24)))
        .collect();
    Config::build(
        "sim-1",
        "127.0.0.0/8".parse().unwrap(),
        &zones,
        &subnets,
        &pools,
    )
    .expect("the big test config is valid")
}
