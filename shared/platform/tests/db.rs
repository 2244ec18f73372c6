//! Connecting to PostgreSQL (needs the local server, or `DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn server() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| tally_platform::config::DEFAULT_DATABASE_URL.into());
    tally_platform::db::with_database(&url, "postgres")
}

async fn service_pool(url: String) -> sqlx::PgPool {
    let config = tally_platform::Config {
        database_url: url,
        db_max_connections: 1,
        ..tally_platform::Config::default()
    };
    tally_platform::db::connect_service(&config, "rating")
        .await
        .unwrap()
}

async fn application_name(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_service_names_its_connections_unless_the_url_does() {
    let pool = service_pool(server()).await;
    assert_eq!(application_name(&pool).await, "tally-rating");
    let pool = service_pool(format!("{}?application_name=mine", server())).await;
    assert_eq!(application_name(&pool).await, "mine");
}
