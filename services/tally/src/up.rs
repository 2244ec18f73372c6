//! `tally up`: the four services composed in one process.

use std::str::FromStr;
use tally_platform::health::{AdminServer, Readiness};
use tally_platform::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Collector,
    Rating,
    Invoicing,
    Api,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Collector,
        Service::Rating,
        Service::Invoicing,
        Service::Api,
    ];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Service::Collector => "collector",
            Service::Rating => "rating",
            Service::Invoicing => "invoicing",
            Service::Api => "api",
        }
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "collector" => Ok(Service::Collector),
            "rating" => Ok(Service::Rating),
            "invoicing" => Ok(Service::Invoicing),
            "api" => Ok(Service::Api),
            other => Err(format!(
                "unknown service {other:?}: expected collector, rating, invoicing or api"
            )),
        }
    }
}

/// Services running in this process.
pub struct Running {
    pub collector_port: Option<u16>,
    pub api_port: Option<u16>,
    /// `/healthz`, `/readyz`, `/metrics` of these services.
    pub admin_port: Option<u16>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub fn collector_url(&self) -> Option<String> {
        self.collector_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    pub fn api_url(&self) -> Option<String> {
        self.api_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    pub fn admin_url(&self) -> Option<String> {
        self.admin_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// Stops every service and waits for them; the first error wins.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until every service stopped (after the token was cancelled, or
    /// because one failed).
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for task in self.tasks {
            let result = task.await.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(err) = result {
                self.shutdown.cancel();
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Prepares the database and topics, then starts `services` and, unless
/// `TALLY_ADMIN_ADDR` is `off`, their admin endpoints.
pub async fn start(
    config: &Config,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    tally_platform::prepare(config).await?;
    let mut running = Running {
        collector_port: None,
        api_port: None,
        admin_port: None,
        shutdown: shutdown.clone(),
        tasks: Vec::new(),
    };
    let mut readiness = Readiness::default();
    for service in services {
        let token = shutdown.clone();
        let task = match service {
            Service::Collector => {
                let app = tally_collector::Application::build(config.clone()).await?;
                running.collector_port = Some(app.port());
                readiness.extend(app.readiness());
                tokio::spawn(app.run_until_stopped(token))
            }
            Service::Rating => {
                let app = tally_rating::Application::build(config.clone()).await?;
                readiness.extend(app.readiness());
                tokio::spawn(app.run_until_stopped(token))
            }
            Service::Invoicing => {
                let app = tally_invoicing::Application::build(config.clone()).await?;
                readiness.extend(app.readiness());
                tokio::spawn(app.run_until_stopped(token))
            }
            Service::Api => {
                let app = tally_api::Application::build(config.clone()).await?;
                running.api_port = Some(app.port());
                readiness.extend(app.readiness());
                tokio::spawn(app.run_until_stopped(token))
            }
        };
        running.tasks.push(task);
    }
    if let Some(addr) = config.admin_addr {
        let admin = AdminServer::bind(addr, readiness).await?;
        running.admin_port = Some(admin.port());
        let token = shutdown.clone();
        running
            .tasks
            .push(tokio::spawn(async move { Ok(admin.serve(token).await?) }));
    }
    Ok(running)
}
