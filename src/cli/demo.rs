//! The demo and the forms report: mock registries and a gateway in one process.

use crate::config::Settings;
use crate::startup::Application;
use clap::Subcommand;
use std::process::ExitCode;

use super::registries::PopulationArgs;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Every form's ceiling and measured cut of declared data over a sample of
    /// the mock population; exits non-zero if any form is below 20%.
    Forms {
        #[command(flatten)]
        population: PopulationArgs,
        /// Citizens of each kind to prefill for.
        #[arg(long, default_value_t = 5)]
        per_kind: usize,
    },
    /// The dossiers received in a period against what the national portal
    /// holds: those that differ and why, the tally per procedure, channel and
    /// status, and Decision 766's counters; exits 1 while any differs.
    Reconcile {
        /// First day received (yyyy-mm-dd).
        #[arg(long)]
        from: String,
        /// Last day received (yyyy-mm-dd), included.
        #[arg(long)]
        to: String,
        /// Send again, whole, every differing dossier the portal did not
        /// refuse, wait for them to be delivered, and reconcile again.
        #[arg(long)]
        resend: bool,
        /// Print the reconciliation as JSON (as GET /admin/v1/reconciliation answers).
        #[arg(long)]
        json: bool,
        /// How long --resend waits for the portal, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
}

/// Mock registries on free ports and a gateway on a throw-away database.
async fn gateway_with_mocks(
    mut settings: Settings,
    population: &PopulationArgs,
    mock_ports: [u16; 3],
) -> anyhow::Result<(crate::registries::MockRegistries, Application)> {
    use crate::registries::{MockConfig, MockRegistries};
    // The business registry beside the others: on 7104 when they have fixed ports.
    let business_port = (mock_ports[0] != 0).then_some(7104);
    let portal_port = (mock_ports[0] != 0).then_some(7105);
    let config = MockConfig {
        seed: population.seed,
        citizens: population.citizens,
        ports: mock_ports,
        business_port,
        portal_port,
        ..Default::default()
    };
    let mocks = MockRegistries::start(&config)?;
    crate::demo::use_mocks(&mut settings, &mocks, &config.tokens);
    if settings.portal.url.is_empty() {
        // The province's dossiers go to the mock national portal.
        settings.portal.url = mocks.portal.url();
        settings.portal.username = config.portal.username.clone();
        settings.portal.password = crate::config::Secret::new(config.portal.password.clone());
    }
    let app = Application::build(settings).await?;
    Ok((mocks, app))
}

pub(super) fn report_forms(
    mut settings: Settings,
    population: PopulationArgs,
    per_kind: usize,
) -> anyhow::Result<ExitCode> {
    let path = std::env::temp_dir().join(format!("lgsp-report-{}.db", crate::telemetry::new_uuid().simple()));
    settings.database_url = crate::config::Secret::new(format!("sqlite://{}", path.display()));
    settings.port = 0;
    let code = actix_rt::System::new().block_on(async move {
        let (mocks, app) = gateway_with_mocks(settings, &population, [0, 0, 0]).await?;
        let state = app.state();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let key = crate::demo::demo_partner(&state).await?;
        let samples = mocks.population.samples(per_kind);
        let rows = crate::demo::report(&state, &base, &key.key, &samples).await?;
        crate::demo::print_report(&rows);
        mocks.stop().await;
        anyhow::Ok(if rows.iter().all(|r| r.meets_target()) { ExitCode::SUCCESS } else { ExitCode::from(1) })
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    code
}

/// The demo's credentials key, when the configuration names none: a key
/// file beside the SQLite database (in the working directory otherwise),
/// made at the first demo and used by the next, so that the credentials a
/// steward sets survive a restart. Returns the file when it is the demo's.
fn demo_credentials_key(settings: &mut Settings) -> anyhow::Result<Option<std::path::PathBuf>> {
    if !settings.credentials_key.is_empty() || settings.credentials_key_file.is_some() {
        return Ok(None);
    }
    let url = crate::db::DatabaseUrl::parse(settings.database_url.expose()).map_err(anyhow::Error::msg)?;
    let dir = url
        .sqlite_file()
        .and_then(|f| std::path::Path::new(f).parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let path = dir.join("lgsp-credentials.key");
    if !path.exists() {
        let key = crate::sealing::SealingKey::generate().map_err(anyhow::Error::msg)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(|e| anyhow::anyhow!("cannot make {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, key.as_bytes())?;
    }
    settings.credentials_key_file = Some(path.clone());
    Ok(Some(path))
}

pub(super) fn demo(settings: Settings, population: PopulationArgs) -> anyhow::Result<ExitCode> {
    actix_rt::System::new().block_on(async move {
        let steward = crate::domain::partner::new_secret(crate::domain::partner::ADMIN_TOKEN_PREFIX);
        let auditor = crate::domain::partner::new_secret(crate::domain::partner::ADMIN_TOKEN_PREFIX);
        let mut settings = settings;
        settings.bootstrap_admin_tokens.push(crate::config::Secret::new(format!("steward:{steward}")));
        settings.bootstrap_admin_tokens.push(crate::config::Secret::new(format!("auditor:{auditor}")));
        let key_file = demo_credentials_key(&mut settings)?;
        let started = std::time::Instant::now();
        let (mocks, app) = gateway_with_mocks(settings, &population, [7101, 7102, 7103]).await?;
        let state = app.state();
        let base = format!("http://127.0.0.1:{}", app.port());
        let key = crate::demo::demo_partner(&state).await?;
        // Served from now on: the demo's own dossiers below go through HTTP.
        let running = tokio::spawn(app.run_until_stopped());
        let s = mocks.population.samples(1);
        let first = |v: &[String]| v.first().cloned().unwrap_or_default();
        println!("lgsp demo is up in {:.1} s\n", started.elapsed().as_secs_f64());
        println!("  gateway          {base}   (API docs: {base}/docs)");
        for kind in crate::registries::RegistryKind::ALL {
            println!("  mock {:<12} {}", kind.name(), mocks.url(kind));
        }
        println!("  mock {:<12} {}/dkkd/ws (SOAP; no adapter: connect it, see the README)", "business", mocks.business.url());
        println!("  mock {:<12} {}/dvcqg/api (the national portal's dossier sync)", "portal", mocks.portal.url());
        println!("  partner          {} (the provincial portal), key id {}", crate::demo::DEMO_PARTNER, key.id);
        println!("\nexport LGSP_KEY={}", key.key);
        println!("export LGSP_STEWARD={steward}\nexport LGSP_AUDITOR={auditor}\n");
        if let Some(path) = &key_file {
            println!("  upstream credentials are sealed with the key in {}\n", path.display());
        }
        let prefill = |form: &str, purpose: &str, id: &str, who: &str| {
            println!("# {who}");
            println!(
                "curl -s {base}/v1/prefill -H \"Authorization: Bearer $LGSP_KEY\" -H 'Content-Type: application/json' \\\n  -d '{{\"form\":\"{form}\",\"citizen_id\":\"{id}\",\"purpose\":\"{purpose}\"}}'\n"
            );
        };
        prefill("ct01", "residence_change", &first(&s.adult_with_household), "CT01 for an adult with a household");
        prefill("ct01", "residence_change", &first(&s.legacy_address), "CT01 for a citizen whose address is on a merged ward");
        prefill("birth_registration", "birth_registration", &first(&s.parent_of_newborn), "Birth registration by a parent of a newborn");
        prefill("tk1_ts", "health_insurance_enrolment", &first(&s.child_under_6), "TK1-TS for a child under 6");
        prefill("marital_status_certificate", "marital_status_certificate", &first(&s.married), "Marital status of a married citizen");
        prefill("death_registration", "death_registration", &first(&s.deceased), "Death registration");
        let adult = first(&s.adult_with_household);
        println!("# One registry operation, with its purpose");
        println!("curl -s {base}/v1/exchange/population/citizen -H \"Authorization: Bearer $LGSP_KEY\" -H 'X-Purpose: residence_change' \\\n  -H 'Content-Type: application/json' -d '{{\"citizen_id\":\"{adult}\"}}'\n");
        println!("# Forms and their cut of declared data\ncurl -s {base}/v1/forms -H \"Authorization: Bearer $LGSP_KEY\"\ncurl -s {base}/v1/forms/ct01/coverage -H \"Authorization: Bearer $LGSP_KEY\"\n");
        println!("# Who accessed this citizen's data\ncurl -s {base}/v1/subjects/{adult}/access-log -H \"Authorization: Bearer $LGSP_KEY\"\n");
        println!("# The audit trail and its chain (auditor)\ncurl -s '{base}/admin/v1/audit?limit=5' -H \"Authorization: Bearer $LGSP_AUDITOR\"\ncurl -s {base}/admin/v1/audit/verify -H \"Authorization: Bearer $LGSP_AUDITOR\"\n");
        println!("# Take a registry down and prefill again (the others still answer)\ncurl -s -X PUT {}/__faults -H 'X-BHXH-Token: {}' -H 'Content-Type: application/json' -d '{{\"error_rate\":1.0}}'\n", mocks.url(crate::registries::RegistryKind::Insurance), crate::registries::default_tokens()[2]);
        let state = &mocks.business.state;
        let people = &mocks.population.people;
        if let Some(b) = state.businesses.iter().find(|b| !b.enterprise && b.status == 1 && people[b.holder].is_alive()) {
            println!(
                "# The business registry has no adapter: connect it as the README's walk-through shows, then\n\
                 curl -s {base}/v1/prefill -H \"Authorization: Bearer $LGSP_KEY\" -H 'Content-Type: application/json' \\\n  \
                 -d '{{\"form\":\"household_business_change\",\"citizen_id\":\"{}\",\"purpose\":\"household_business_change\"}}'\n",
                people[b.holder].id
            );
        }
        // One dossier of each group of linked procedures, carried end to end.
        let client = reqwest::Client::new();
        let wait = std::time::Duration::from_secs(30);
        let pop = &mocks.population;
        let filings = [crate::demo::birth_filing(pop, 0, "Thảo"), crate::demo::death_filing(pop, 0)];
        println!("# Linked procedures (Decree 63/2024): one dossier of each group, carried just now");
        let mut codes = Vec::new();
        for body in filings.iter().flatten() {
            let d = crate::demo::carry_dossier(&client, &base, &key.key, body, wait).await?;
            crate::demo::print_dossier(&d);
            codes.push(d["code"].as_str().unwrap_or("").to_string());
        }
        if let Some(code) = codes.first() {
            println!("\n# Watch a dossier: its steps, deadlines, results and timeline");
            println!("curl -s {base}/v1/linked-dossiers/{code} -H \"Authorization: Bearer $LGSP_KEY\"");
        }
        let today = crate::domain::calendar::today_in_vietnam();
        println!("\n# The national portal holds them too: today's dossiers reconciled, with Decision 766's counters (steward)");
        println!("curl -s '{base}/admin/v1/reconciliation?from={today}&to={today}' -H \"Authorization: Bearer $LGSP_STEWARD\"");
        println!("# or in the console: {base}/console/reconciliation");
        // From now on each registry takes 3 s at each status, to watch one move.
        for kind in crate::registries::RegistryKind::ALL {
            mocks.set_faults(kind, crate::registries::Faults { processing_ms: 3_000, ..Default::default() });
        }
        if let Some(body) = crate::demo::birth_filing(pop, 1, "Vy") {
            println!("\n# File one yourself (the registries now take 3 s at each status), then read it as above");
            println!(
                "curl -s {base}/v1/linked-dossiers -H \"Authorization: Bearer $LGSP_KEY\" -H \"Idempotency-Key: $(date +%s%N)\" \\\n  -H 'Content-Type: application/json' -d '{body}'\n"
            );
        }
        println!("Ctrl-C stops everything.");
        running.await??;
        mocks.stop().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
