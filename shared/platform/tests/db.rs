//! Connecting to PostgreSQL (needs the local server, or `DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn server() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn application_name(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_service_names_its_connections_unless_the_url_does() {
    let pool = tally_platform::db::connect_service(&server(), 1, "rating")
        .await
        .unwrap();
    assert_eq!(application_name(&pool).await, "tally-rating");
    let url = format!("{}?application_name=mine", server());
    let pool = tally_platform::db::connect_service(&url, 1, "rating")
        .await
        .unwrap();
    assert_eq!(application_name(&pool).await, "mine");
}
