//! The bill page: `/accounts/{id}/bill` (HTML), `/accounts/{id}/bill.csv`,
//! the sign-in form, and the finance API that issues signed links.
//!
//! A viewer is let in by one of: a signed link (`expires` + `sig` in the
//! query), a bill-page session cookie set at sign-in, or an
//! `Authorization: Bearer` key (the account's customer token, or staff).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use chrono::{Duration, Utc};
use maud::html;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tally_domain::{AccountId, Period};
use tally_platform::auth::{self, Principal};
use tally_platform::catalog;

use crate::auth::Staff;
use crate::customer::bill_view::{self, BillPage};
use crate::customer::contract;
use crate::customer::links::Signer;
use crate::customer::outlook;
use crate::customer::sessions::{self, Throttle, LOGIN_COOKIE, SESSION_COOKIE, SESSION_HOURS};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, RequestBody};
use tally_invoicing::invoices_repo;

#[derive(Clone)]
pub struct PageState {
    pub pool: PgPool,
    pub signer: Signer,
    pub throttle: Arc<Throttle>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// YYYY-MM
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: Option<String>,
    /// Signed link expiry (unix seconds)
    expires: Option<i64>,
    /// Signed link signature
    sig: Option<String>,
}

fn page_error(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; title { (title) } }
            body { main { h1 { (title) } p { (detail) } p { a href="/login" { "Sign in" } } } } }
    };
    (status, Html(body.into_string())).into_response()
}

/// How a viewer was let in.
struct Admitted {
    /// The query string that keeps a signed-link viewer signed in on the
    /// page's own links.
    query: String,
    /// By a session (which the page offers to end).
    session: bool,
}

impl Admitted {
    fn by_key() -> Admitted {
        Admitted {
            query: String::new(),
            session: false,
        }
    }
}

/// Whether this request may see `account`'s bill, and how.
async fn admit(
    state: &PageState,
    headers: &HeaderMap,
    account: &str,
    q: &PageQuery,
) -> Result<Admitted, Response> {
    let now = Utc::now();
    if let (Some(expires), Some(sig)) = (q.expires, q.sig.as_deref()) {
        return if state.signer.verify(account, expires, sig, now) {
            Ok(Admitted {
                query: format!("&expires={expires}&sig={sig}"),
                session: false,
            })
        } else {
            Err(page_error(StatusCode::FORBIDDEN, "This link does not open this bill", "It may have expired, or it belongs to another account. Ask for a new link or sign in."))
        };
    }
    if let Some(session) = sessions::cookie(headers, SESSION_COOKIE) {
        match sessions::account_of(&state.pool, session).await {
            Ok(Some(owner)) if owner == account => {
                return Ok(Admitted {
                    query: String::new(),
                    session: true,
                })
            }
            Ok(Some(_)) => {
                return Err(page_error(
                    StatusCode::FORBIDDEN,
                    "Not your account",
                    "You are signed in to another account.",
                ))
            }
            Ok(None) => {}
            Err(err) => return Err(ApiError::from(err).into_response()),
        }
    }
    if let Some(token) = auth::bearer(headers) {
        return match auth::authenticate(&state.pool, token).await {
            Ok(Some(Principal::Admin | Principal::Finance)) => Ok(Admitted::by_key()),
            Ok(Some(Principal::Customer(own))) if own.as_str() == account => Ok(Admitted::by_key()),
            Ok(Some(_)) => Err(page_error(
                StatusCode::FORBIDDEN,
                "Not your account",
                "This key does not open this bill.",
            )),
            Ok(None) => Err(page_error(
                StatusCode::UNAUTHORIZED,
                "Sign in to see this bill",
                "The key is not valid.",
            )),
            Err(err) => Err(ApiError::from(err).into_response()),
        };
    }
    Err(Redirect::to("/login").into_response())
}

/// The invoice shown: the requested period, else the newest one.
async fn load(
    state: &PageState,
    account: &str,
    period: Option<&str>,
) -> Result<
    (
        String,
        invoices_repo::Invoice,
        Vec<invoices_repo::PeriodView>,
    ),
    Response,
> {
    let internal = |e: sqlx::Error| ApiError::from(e).into_response();
    let no_such_account = || page_error(StatusCode::NOT_FOUND, "No such account", account);
    // An id that cannot exist is an account that does not: the same page.
    let id = AccountId::parse(account).map_err(|_| no_such_account())?;
    let mut conn = state.pool.acquire().await.map_err(internal)?;
    let Some(acct) = catalog::get_account(&mut conn, &id)
        .await
        .map_err(internal)?
    else {
        return Err(no_such_account());
    };
    let periods = invoices_repo::account_periods(&mut conn, account)
        .await
        .map_err(internal)?;
    let month = match period {
        Some(p) => Period::parse_month(p)
            .map_err(|e| page_error(StatusCode::BAD_REQUEST, "Unknown period", &e.to_string()))?,
        None => match periods.first() {
            Some(p) => Period::month_containing(p.start),
            None => {
                return Err(page_error(
                    StatusCode::NOT_FOUND,
                    "No bill yet",
                    "This account has no usage billed yet.",
                ))
            }
        },
    };
    match invoices_repo::find_by_account_period(&mut conn, account, month)
        .await
        .map_err(internal)?
    {
        Some(invoice) => Ok((acct.name, invoice, periods)),
        None => Err(page_error(
            StatusCode::NOT_FOUND,
            "No bill for this period",
            "There is no usage billed in this period.",
        )),
    }
}

/// The account and query of a bill page's address, when both parse.
fn page_address(
    account: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Option<(String, PageQuery)> {
    Some((account.ok()?.0, query.ok()?.0))
}

/// A bill page's address that does not parse: a page saying so (never
/// axum's text/plain rejection).
fn malformed_link() -> Response {
    page_error(
        StatusCode::BAD_REQUEST,
        "This link is malformed",
        "Check that the whole link was copied, ask for a new one, or sign in.",
    )
}

#[utoipa::path(
    get,
    path = "/accounts/{account}/bill",
    tag = "customer",
    summary = "The bill page (HTML): signed link, sign-in session or bearer key",
    params(("account" = String, Path, description = "Account id"), PageQuery),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Not signed in (no signed link, session or key): to /login"),
        (status = 400, description = "A page saying so: the link's query does not parse (`expires` not an integer, a parameter given twice)", content_type = "text/html", body = String),
        (status = 401, description = "A page saying so: the bearer key is not valid", content_type = "text/html", body = String),
        (status = 403, description = "A page saying so: another account's session or customer key, a provider's key, or a link that does not verify (expired, altered, another account's)", content_type = "text/html", body = String),
        (status = 404, description = "A page saying so: no such account, or no bill for the period (or none yet)", content_type = "text/html", body = String),
    ),
)]
pub async fn bill_page(
    State(state): State<PageState>,
    headers: HeaderMap,
    account: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Some((account, q)) = page_address(account, query) else {
        return malformed_link();
    };
    let admitted = match admit(&state, &headers, &account, &q).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (name, invoice, periods) = match load(&state, &account, q.period.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The chart is an aid: without its data the bill still renders, chart empty.
    let daily = match state.pool.acquire().await {
        Ok(mut conn) => {
            invoices_repo::daily_usage(&mut conn, &account, invoice.summary.period.start).await
        }
        Err(err) => Err(err),
    }
    .unwrap_or_else(|err| {
        tracing::warn!(error = %err, "daily usage for the spend chart is unavailable");
        Vec::new()
    });
    let balances = match state.pool.acquire().await {
        Ok(mut conn) => crate::credits::balances(&mut conn, &account, Utc::now()).await,
        Err(err) => Err(err),
    };
    let balances = match balances {
        Ok(b) => b,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let resources = match state.pool.acquire().await {
        Ok(mut conn) => match crate::auth::account_id(&account) {
            Ok(id) => outlook::outlooks(&mut conn, &id, &invoice, Utc::now()).await,
            Err(err) => Err(err),
        },
        Err(err) => Err(err.into()),
    };
    let resources = match resources {
        Ok(r) => r,
        Err(err) => return err.into_response(),
    };
    let contract = match contract_of(&state, &account, &invoice).await {
        Ok(c) => c,
        Err(err) => return err.into_response(),
    };
    let page = BillPage {
        contract: &contract,
        balances: &balances,
        resources: &resources,
        account_name: &name,
        invoice: &invoice,
        periods: &periods,
        daily: &daily,
        today: Utc::now().date_naive(),
        auth_query: &admitted.query,
        signed_in: admitted.session,
    };
    Html(bill_view::render(&page).into_string()).into_response()
}

#[utoipa::path(
    get,
    path = "/accounts/{account}/bill.csv",
    tag = "customer",
    summary = "The bill as CSV",
    description = "Text cells are neutralised against formula injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`. Numbers Tally formats (amounts, quantities, unit prices) are never prefixed.",
    params(("account" = String, Path, description = "Account id"), PageQuery),
    responses(
        (status = 200, description = "CSV", content_type = "text/csv", body = String),
        (status = 303, description = "Not signed in (no signed link, session or key): to /login"),
        (status = 400, description = "A page saying so: the link's query does not parse (`expires` not an integer, a parameter given twice)", content_type = "text/html", body = String),
        (status = 401, description = "A page saying so: the bearer key is not valid", content_type = "text/html", body = String),
        (status = 403, description = "A page saying so: another account's session or customer key, a provider's key, or a link that does not verify (expired, altered, another account's)", content_type = "text/html", body = String),
        (status = 404, description = "A page saying so: no such account, or no bill for the period (or none yet)", content_type = "text/html", body = String),
    ),
)]
pub async fn bill_csv(
    State(state): State<PageState>,
    headers: HeaderMap,
    account: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Some((account, q)) = page_address(account, query) else {
        return malformed_link();
    };
    if let Err(r) = admit(&state, &headers, &account, &q).await {
        return r;
    }
    match load(&state, &account, q.period.as_deref()).await {
        Ok((_, invoice, _)) => {
            let contract = match contract_of(&state, &account, &invoice).await {
                Ok(c) => c,
                Err(err) => return err.into_response(),
            };
            let name = format!(
                "attachment; filename=\"bill-{account}-{}.csv\"",
                invoice.summary.period.label
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, name),
                ],
                bill_view::csv(&invoice, &contract),
            )
                .into_response()
        }
        Err(r) => r,
    }
}

/// The contract part of `invoice`'s bill (price changes as of now).
async fn contract_of(
    state: &PageState,
    account: &str,
    invoice: &invoices_repo::Invoice,
) -> Result<contract::BillContract, ApiError> {
    let id = crate::auth::account_id(account)?;
    let mut conn = state.pool.acquire().await?;
    contract::load(&mut conn, &id, invoice, Utc::now()).await
}

/// `GET /login`: the sign-in form, with a fresh nonce in it and in its cookie.
#[utoipa::path(
    get,
    path = "/login",
    tag = "customer",
    summary = "Sign-in form for customers (sets a one-hour tally_login nonce cookie that the form's csrf field must match)",
    responses((status = 200, description = "The form", content_type = "text/html", body = String)),
)]
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// The sign-in form (with `error`, when there is one) and its nonce cookie.
fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let nonce = sessions::random_token();
    let page = html! {
        (maud::DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; meta name="viewport" content="width=device-width, initial-scale=1"; title { "Sign in — your bill" } }
            body { main {
                h1 { "See your bill" }
                @if let Some(e) = error { p role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(nonce);
                    label for="token" { "Customer token" }
                    " " input id="token" name="token" type="password" autocomplete="off" required;
                    " " button type="submit" { "Sign in" }
                }
            } }
        }
    };
    let mut response = (status, Html(page.into_string())).into_response();
    let cookie = sessions::set_cookie(LOGIN_COOKIE, &nonce, "/login", 3600);
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = LoginForm)]
pub struct LoginForm {
    #[serde(default)]
    #[schema(required = true)]
    token: String,
    /// The nonce of the form (and of its tally_login cookie)
    #[schema(required = true, value_type = String)]
    csrf: Option<String>,
}

/// `POST /login`: a customer token opens a session on its account's bill.
#[utoipa::path(
    post,
    path = "/login",
    tag = "customer",
    summary = "Sign in with a customer token; opens a bill-page session (cookie tally_bill: HttpOnly, Secure, SameSite=Strict, 12 hours; it ends at sign-out or when the token is revoked)",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the account's bill"),
        (status = 400, description = "The form could not be read: a fresh form saying so", content_type = "text/html", body = String),
        (status = 401, description = "Not a customer token (counts against the client's failed sign-ins)", content_type = "text/html", body = String),
        (status = 403, description = "The csrf field does not match the tally_login cookie, or the request comes from another site (Origin, Sec-Fetch-Site): a fresh form", content_type = "text/html", body = String),
        (status = 429, description = "Too many failed sign-ins from this client address (10 in 15 minutes)", content_type = "text/html", body = String,
            headers(("Retry-After" = u64, description = "Seconds until sign-in is allowed again"))),
    ),
)]
pub async fn login(
    State(state): State<PageState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let client = peer.map(|axum::Extension(info)| info.0.ip());
    let Ok(Form(form)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("The sign-in form could not be read. Sign in again here."),
        );
    };
    if let Err(wait) = state.throttle.check(client) {
        let mut response = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins from here. Try again later."),
        );
        if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if !sessions::same_site(&headers) || !sessions::nonce_matches(&headers, form.csrf.as_deref()) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("This sign-in form expired or was sent from another site. Sign in again here."),
        );
    }
    match auth::authenticate_key(&state.pool, form.token.trim()).await {
        Ok(Some((key, Principal::Customer(account)))) => {
            state.throttle.succeeded(client);
            let expires = Utc::now() + Duration::hours(SESSION_HOURS);
            let session = match sessions::open(&state.pool, account.as_str(), key, expires).await {
                Ok(id) => id,
                Err(err) => return ApiError::from(err).into_response(),
            };
            let mut response = Redirect::to(&format!("/accounts/{account}/bill")).into_response();
            for cookie in [
                sessions::set_cookie(SESSION_COOKIE, &session, "/", SESSION_HOURS * 3600),
                sessions::set_cookie(LOGIN_COOKIE, "", "/login", 0),
            ] {
                if let Ok(value) = cookie.parse() {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Ok(_) => {
            state.throttle.failed(client);
            login_page(
                StatusCode::UNAUTHORIZED,
                Some("That is not a customer token."),
            )
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// `POST /logout`: ends the session and clears its cookie.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "customer",
    summary = "Sign out: ends the bill-page session and clears its cookie",
    responses((status = 303, description = "To the sign-in form")),
)]
pub async fn logout(State(state): State<PageState>, headers: HeaderMap) -> Response {
    if let Some(session) = sessions::cookie(&headers, SESSION_COOKIE) {
        if let Err(err) = sessions::close(&state.pool, session).await {
            return ApiError::from(err).into_response();
        }
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(value) = sessions::set_cookie(SESSION_COOKIE, "", "/", 0).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LinkRequest {
    /// YYYY-MM: the link opens this month's bill; absent: the newest
    #[schema(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: Option<String>,
    /// Lifetime in seconds (default 7 days, at most 90 days).
    #[schema(minimum = 60, maximum = 7776000)]
    ttl_seconds: Option<i64>,
}

impl RequestBody for LinkRequest {}

/// `POST /v1/accounts/{id}/bill-links` (finance, admin): a signed, expiring link.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/bill-links",
    tag = "finance",
    summary = "A signed, expiring link to the account's bill page (finance, admin)",
    params(("account" = String, Path, description = "Account id")),
    request_body = LinkRequest,
    responses((status = 201, description = "The link", body = inline(crate::openapi::BillLink))),
    security(("bearer" = [])),
)]
pub async fn create_link(
    _: Staff,
    State(state): State<PageState>,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<LinkRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = crate::auth::account_id(&account)?;
    let mut conn = state.pool.acquire().await?;
    if catalog::get_account(&mut conn, &id).await?.is_none() {
        return Err(ApiError::NotFound(format!("account {account}")));
    }
    let ttl = body.ttl_seconds.unwrap_or(7 * 24 * 3600);
    if !(60..=90 * 24 * 3600).contains(&ttl) {
        return Err(ApiError::InvalidRequest(
            "ttl_seconds must be between 60 and 7776000".into(),
        ));
    }
    let period = match body.period.as_deref() {
        Some(p) => Some(
            Period::parse_month(p)
                .map_err(|e| ApiError::InvalidPeriod(e.to_string()))?
                .label(),
        ),
        None => None,
    };
    let expires = Utc::now() + Duration::seconds(ttl);
    let sig = state.signer.sign(&account, expires);
    let period_param = period.map(|p| format!("period={p}&")).unwrap_or_default();
    let path = format!(
        "/accounts/{account}/bill?{period_param}expires={}&sig={sig}",
        expires.timestamp()
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({"path": path, "expires_at": expires})),
    ))
}
