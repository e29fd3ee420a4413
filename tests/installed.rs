//! vmha as a package installs it: the .deb's files on this machine, the installed OCF agent under
//! ocf-tester and a one-node Pacemaker, `man vmha`, the completions, fence_vmha, and the .rpm holding the
//! same files as the .deb. Runs only when told the .deb is installed (`VMHA_INSTALLED=1`, which
//! `packaging/test-installed` sets after `apt-get install`); otherwise it prints SKIPPED, in the plain
//! `cargo test` output (hence its own main). The packages are `VMHA_DEB` and `VMHA_RPM`, else the newest
//! in target/debian and target/generate-rpm. Needs root and the flock of the cluster tests:
//! `flock /tmp/vmha-pacemaker.lock cargo test --test installed`.

#[path = "pacemaker/common.rs"]
pub mod common;
#[path = "pacemaker/one_node.rs"]
pub mod one_node;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;
#[path = "pacemaker/stack.rs"]
pub mod stack;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use sim::{Mode, Sim};

/// The installed agent, as Pacemaker names it: ocf:vmha:vm.
const AGENT: &str = "/usr/lib/ocf/resource.d/vmha/vm";
const PROVIDER: &str = "vmha";
/// The PATH the checks run with: the system's, so the shims' `vmha` is the package's /usr/bin/vmha and
/// never a developer's ~/.cargo/bin/vmha.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The .deb's paths that sit elsewhere in the .rpm (each distribution's convention), mapped deb -> rpm.
/// The contents differ only for the licence (Debian's copyright file names it and points at
/// /usr/share/common-licenses) and the README (Debian gzips documentation over 4 kB).
const DEB_TO_RPM: [(&str, &str, bool); 3] = [
    (
        "/usr/share/zsh/vendor-completions/_vmha",
        "/usr/share/zsh/site-functions/_vmha",
        true,
    ),
    (
        "/usr/share/doc/vmha/copyright",
        "/usr/share/licenses/vmha/LICENSE",
        false,
    ),
    (
        "/usr/share/doc/vmha/README.md.gz",
        "/usr/share/doc/vmha/README.md",
        false,
    ),
];

/// The .deb's files that the .rpm has no counterpart for: Debian's changelog.
const DEB_ONLY: [&str; 1] = ["/usr/share/doc/vmha/changelog.Debian.gz"];

enum Checked {
    Passed(String),
    Skipped(String),
}

type Check = fn() -> Result<Checked, String>;

fn main() {
    let all: [(&str, Check); 9] = [
        ("deb_and_rpm_hold_the_same_files", deb_and_rpm_hold_the_same_files),
        ("deb_and_rpm_metadata_agree", deb_and_rpm_metadata_agree),
        ("installed_files_are_the_debs", installed_files_are_the_debs),
        ("man_pages_render", man_pages_render),
        ("completions_load", completions_load),
        ("fence_vmha_prints_metadata", fence_vmha_prints_metadata),
        ("crm_resource_shows_the_agents_metadata", crm_resource_shows_metadata),
        ("ocf_tester_passes_on_the_installed_agent", ocf_tester_passes),
        ("pacemaker_runs_the_installed_agent", pacemaker_runs_the_installed_agent),
    ];
    if std::env::var("VMHA_INSTALLED").as_deref() != Ok("1") {
        let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
        println!(
            "installed: {}: SKIPPED: the package is not installed (packaging/test-installed builds, installs and \
             tests it, then purges it; or set VMHA_INSTALLED=1 after apt-get install ./vmha_*.deb)",
            names.join(", ")
        );
        println!("installed: 0 passed, 0 failed, {} skipped", all.len());
        return;
    }
    // SAFETY: nothing else runs yet: no thread has been started.
    unsafe { std::env::set_var("PATH", SYSTEM_PATH) };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, check) in all {
        let t = Instant::now();
        let result = std::panic::catch_unwind(check).unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            Err(why)
        });
        match result {
            Ok(Checked::Passed(what)) => {
                passed += 1;
                println!("installed: {name}: ok in {:.1?} ({what})", t.elapsed());
            }
            Ok(Checked::Skipped(why)) => {
                skipped += 1;
                println!("installed: {name}: SKIPPED: {why}");
            }
            Err(why) => {
                failed += 1;
                println!("installed: {name}: FAILED after {:.1?}: {why}", t.elapsed());
            }
        }
    }
    println!("installed: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Runs a program; Err names it and its output if it cannot start or exits non-zero.
fn run_ok(program: &str, args: &[&str]) -> Result<String, String> {
    let out = output(Command::new(program).args(args))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} exited {:?}: {}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `$var`, else the newest file with this extension in target/`dir`.
fn package(var: &str, dir: &str, ext: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(var) {
        return Ok(PathBuf::from(p));
    }
    let dir = target_dir().join(dir);
    std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e} (run packaging/build, or set {var})", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("no .{ext} in {} (run packaging/build, or set {var})", dir.display()))
}

/// One packaged file: its permission string (`-rwxr-xr-x`) and size.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    perms: String,
    size: u64,
}

/// The .deb's regular files, from `dpkg-deb -c` (tar's listing: perms owner size date time ./path).
fn deb_files(deb: &Path) -> Result<BTreeMap<String, Entry>, String> {
    let listing = run_ok("dpkg-deb", &["-c", &deb.display().to_string()])?;
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[0].starts_with('d') {
            continue;
        }
        if f[1] != "0/0" && f[1] != "root/root" {
            return Err(format!("not owned by root in the .deb: {line}"));
        }
        let path = f[5].trim_start_matches('.').to_string();
        let size = f[2].parse().map_err(|_| format!("bad size in: {line}"))?;
        files.insert(
            path,
            Entry {
                perms: f[0].to_string(),
                size,
            },
        );
    }
    Ok(files)
}

/// The .rpm's files, from `rpm -qlvp` (ls -l style: perms links user group size month day time path).
fn rpm_files(rpm: &Path) -> Result<BTreeMap<String, Entry>, String> {
    let listing = run_ok("rpm", &["-qlvp", &rpm.display().to_string()])?;
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || f[0].starts_with('d') {
            continue;
        }
        if (f[2], f[3]) != ("root", "root") {
            return Err(format!("not owned by root in the .rpm: {line}"));
        }
        let size = f[4].parse().map_err(|_| format!("bad size in: {line}"))?;
        files.insert(
            f[8].to_string(),
            Entry {
                perms: f[0].to_string(),
                size,
            },
        );
    }
    Ok(files)
}

fn deb_and_rpm_hold_the_same_files() -> Result<Checked, String> {
    let deb = package("VMHA_DEB", "debian", "deb")?;
    let rpm = package("VMHA_RPM", "generate-rpm", "rpm")?;
    let debs = deb_files(&deb)?;
    let rpms = rpm_files(&rpm)?;
    let mut problems = Vec::new();
    let mut mapped: BTreeMap<String, Entry> = BTreeMap::new();
    for (path, entry) in debs.iter().filter(|(p, _)| !DEB_ONLY.contains(&p.as_str())) {
        match DEB_TO_RPM.iter().find(|(d, _, _)| d == path) {
            Some((_, r, same_content)) => {
                let mut e = entry.clone();
                if !same_content {
                    // Another form of the same text: the size is not comparable, the rest is.
                    e.size = rpms.get(*r).map(|x| x.size).unwrap_or(0);
                }
                mapped.insert(r.to_string(), e);
            }
            None => {
                mapped.insert(path.clone(), entry.clone());
            }
        }
    }
    for (path, e) in &mapped {
        match rpms.get(path) {
            None => problems.push(format!("only in the .deb: {path}")),
            Some(r) if r != e => problems.push(format!("{path}: .deb {e:?}, .rpm {r:?}")),
            Some(_) => {}
        }
    }
    for path in rpms.keys().filter(|p| !mapped.contains_key(*p)) {
        problems.push(format!("only in the .rpm: {path}"));
    }
    // The list, in both.
    for want in [
        "/usr/bin/vmha",
        "/usr/lib/ocf/resource.d/vmha/vm",
        "/usr/sbin/fence_vmha",
        "/usr/share/man/man1/vmha.1.gz",
        "/usr/share/man/man1/vmha-start.1.gz",
        "/usr/share/bash-completion/completions/vmha",
        "/usr/share/zsh/site-functions/_vmha",
        "/usr/share/fish/vendor_completions.d/vmha.fish",
        "/usr/share/doc/vmha/examples/vmha.toml",
        "/usr/share/doc/vmha/examples/clusterpro/start.sh",
        "/usr/share/licenses/vmha/LICENSE",
    ] {
        if !rpms.contains_key(want) {
            problems.push(format!("{want} is missing"));
        }
    }
    if problems.is_empty() {
        Ok(Checked::Passed(format!(
            "{} files each; {} and {}",
            rpms.len(),
            deb.display(),
            rpm.display()
        )))
    } else {
        Err(problems.join("\n"))
    }
}

fn deb_and_rpm_metadata_agree() -> Result<Checked, String> {
    let deb = package("VMHA_DEB", "debian", "deb")?.display().to_string();
    let rpm = package("VMHA_RPM", "generate-rpm", "rpm")?.display().to_string();
    let field = |name: &str| run_ok("dpkg-deb", &["-f", &deb, name]).map(|s| s.trim().to_string());
    let rpm_q = |args: &[&str]| {
        let mut a = vec!["-qp"];
        a.extend_from_slice(args);
        a.push(&rpm);
        run_ok("rpm", &a)
    };
    let mut problems = Vec::new();
    let rpm_nvr = rpm_q(&["--qf", "%{NAME} %{VERSION}-%{RELEASE} %{LICENSE}"])?;
    let deb_nv = format!("{} {}", field("Package")?, field("Version")?);
    if !rpm_nvr.starts_with(&format!("{deb_nv} ")) {
        problems.push(format!("name/version: .deb {deb_nv}, .rpm {rpm_nvr}"));
    }
    if !rpm_nvr.ends_with(" Apache-2.0") {
        problems.push(format!("the .rpm's licence is not Apache-2.0: {rpm_nvr}"));
    }
    let copyright = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -xOf - ./usr/share/doc/vmha/copyright")
        .arg("sh")
        .arg(&deb)
        .output()
        .map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&copyright.stdout).contains("License: Apache-2.0") {
        problems.push("the .deb's copyright file does not name the Apache-2.0 licence".into());
    }
    // Weak dependencies alike; Pacemaker's packages never required.
    let words = |s: &str| -> BTreeSet<String> {
        s.split([',', '\n'])
            .map(|w| w.split_whitespace().next().unwrap_or("").to_string())
            .filter(|w| !w.is_empty())
            .collect()
    };
    for (deb_field, rpm_flag) in [("Recommends", "--recommends"), ("Suggests", "--suggests")] {
        let (d, r) = (words(&field(deb_field)?), words(&rpm_q(&[rpm_flag])?));
        if d != r || d.is_empty() {
            problems.push(format!("{deb_field}: .deb {d:?}, .rpm {r:?}"));
        }
    }
    let depends = field("Depends")?;
    if words(&depends) != BTreeSet::from(["libc6".to_string()]) {
        problems.push(format!("the .deb should depend on libc6 only: {depends}"));
    }
    let requires = rpm_q(&["-R"])?;
    let allowed = [
        "/bin/sh",
        "ld-linux",
        "libc.so",
        "libgcc_s.so",
        "libm.so",
        "rpmlib(",
        "rtld(",
    ];
    for r in requires.lines().filter(|r| !allowed.iter().any(|a| r.starts_with(a))) {
        problems.push(format!("the .rpm requires {r}: only libc and /bin/sh are expected"));
    }
    // No maintainer script reaches the network or another package manager.
    let mut scripts = rpm_q(&["--scripts"])?;
    for s in ["postinst", "postrm", "preinst", "prerm"] {
        if let Ok(text) = run_ok("dpkg-deb", &["-I", &deb, s]) {
            scripts.push_str(&text);
        }
    }
    for word in ["curl", "wget", "http", "apt", "dnf", "yum", "zypper", "nc "] {
        if scripts.contains(word) {
            problems.push(format!("a maintainer script mentions {word}:\n{scripts}"));
        }
    }
    if problems.is_empty() {
        Ok(Checked::Passed(format!("{deb_nv}; {}", depends)))
    } else {
        Err(problems.join("\n"))
    }
}

fn installed_files_are_the_debs() -> Result<Checked, String> {
    let status = run_ok("dpkg-query", &["-W", "-f", "${Status} ${Version}", "vmha"])?;
    if !status.starts_with("install ok installed") {
        return Err(format!("dpkg says vmha is not installed: {status}"));
    }
    let deb = package("VMHA_DEB", "debian", "deb")?;
    let files = deb_files(&deb)?;
    let mut problems = Vec::new();
    for (path, e) in &files {
        match std::fs::metadata(path) {
            Err(err) => problems.push(format!("{path}: {err}")),
            Ok(m) => {
                let mode = m.permissions().mode() & 0o777;
                let want = if e.perms.contains('x') { 0o755 } else { 0o644 };
                if mode != want || m.len() != e.size || m.uid() != 0 {
                    problems.push(format!(
                        "{path}: mode {mode:o} size {} uid {}, the .deb says {} {}",
                        m.len(),
                        m.uid(),
                        e.perms,
                        e.size
                    ));
                }
            }
        }
    }
    // postinst made the settings directory, root's only.
    match std::fs::metadata("/etc/vmha") {
        Ok(m) if m.is_dir() && m.permissions().mode() & 0o777 == 0o700 && m.uid() == 0 => {}
        Ok(m) => problems.push(format!("/etc/vmha: mode {:o} uid {}", m.permissions().mode(), m.uid())),
        Err(e) => problems.push(format!("/etc/vmha: {e}")),
    }
    let which = run_ok("sh", &["-c", "command -v vmha"])?;
    if which.trim() != "/usr/bin/vmha" {
        problems.push(format!(
            "vmha on the system PATH is {}, not /usr/bin/vmha",
            which.trim()
        ));
    }
    let version = run_ok("/usr/bin/vmha", &["--version"])?;
    if !version.starts_with("vmha ") {
        problems.push(format!("vmha --version: {version}"));
    }
    if problems.is_empty() {
        Ok(Checked::Passed(format!("{} files, {}", files.len(), version.trim())))
    } else {
        Err(problems.join("\n"))
    }
}

fn man_pages_render() -> Result<Checked, String> {
    let mut seen = Vec::new();
    for (page, want) in [("vmha", "monitor"), ("vmha-start", "--start-wait"), ("vmha-ocf", "OCF")] {
        let out = output(
            Command::new("man")
                .arg(page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100"),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.contains(want) {
            return Err(format!(
                "man {page} (exit {:?}) lacks '{want}': {}{text}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        seen.push(format!("{page}: {} lines", text.lines().count()));
    }
    let path = run_ok("man", &["-w", "vmha"])?;
    if path.trim() != "/usr/share/man/man1/vmha.1.gz" {
        return Err(format!("man -w vmha found {}", path.trim()));
    }
    Ok(Checked::Passed(seen.join(", ")))
}

fn completions_load() -> Result<Checked, String> {
    // bash loads the script and registers the completion; zsh and fish are not on this machine, so their
    // files are checked for what each shell looks for.
    let out = run_ok(
        "bash",
        &[
            "-c",
            ". /usr/share/bash-completion/completions/vmha && complete -p vmha",
        ],
    )?;
    if !out.contains("vmha") {
        return Err(format!("bash: complete -p vmha printed {out}"));
    }
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_vmha").map_err(|e| e.to_string())?;
    if !zsh.starts_with("#compdef vmha") {
        return Err("_vmha does not start with #compdef vmha".into());
    }
    let fish = std::fs::read_to_string("/usr/share/fish/vendor_completions.d/vmha.fish").map_err(|e| e.to_string())?;
    if !fish.contains("complete -c vmha") {
        return Err("vmha.fish has no `complete -c vmha`".into());
    }
    Ok(Checked::Passed(out.trim().to_string()))
}

/// fence_vmha execs `vmha fence`; until that command exists in this build the check says so and skips.
fn fence_vmha_prints_metadata() -> Result<Checked, String> {
    let help = output(Command::new("/usr/bin/vmha").args(["fence", "--help"]))?;
    if !help.status.success() {
        return Ok(Checked::Skipped(
            "this vmha has no `fence` command yet: /usr/sbin/fence_vmha is installed, its metadata is checked once \
             `vmha fence` exists"
                .into(),
        ));
    }
    let xml = run_ok("/usr/sbin/fence_vmha", &["-o", "metadata"])?;
    if !xml.contains("<resource-agent") {
        return Err(format!("fence_vmha -o metadata is not an agent's metadata:\n{xml}"));
    }
    well_formed(&xml)?;
    Ok(Checked::Passed(format!("{} bytes of well-formed XML", xml.len())))
}

fn well_formed(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let f = dir.path().join("meta.xml");
    std::fs::write(&f, xml).map_err(|e| e.to_string())?;
    run_ok("xmllint", &["--noout", &f.display().to_string()]).map(|_| ())
}

fn crm_resource_shows_metadata() -> Result<Checked, String> {
    let xml = run_ok("crm_resource", &["--show-metadata", &format!("ocf:{PROVIDER}:vm")])?;
    well_formed(&xml)?;
    for want in [
        "<resource-agent name=\"vm\"",
        "name=\"url\"",
        "name=\"hostmap\"",
        "<action name=\"monitor\"",
    ] {
        if !xml.contains(want) {
            return Err(format!("crm_resource's metadata lacks {want}:\n{xml}"));
        }
    }
    Ok(Checked::Passed(format!("{} bytes, well-formed", xml.len())))
}

fn ocf_tester_passes() -> Result<Checked, String> {
    common::require_tool("ocf-tester");
    let sim = Sim::start(Mode::VCenter.as_str());
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let out = output(
        Command::new("ocf-tester")
            .arg("-v")
            .args(["-n", "vmha-installed"])
            .args(["-o", &format!("url={}", sim.ready("url"))])
            .args(["-o", &format!("user={}", sim.ready("user"))])
            .args(["-o", &format!("password_file={}", pw.display())])
            .args(["-o", &format!("ca_file={}", sim.ready("ca_file"))])
            .args(["-o", "name=DC0_C0_RP0_VM0"])
            .args(["-o", "hostmap=node1:DC0_C0_H0;node2:DC0_C0_H1"])
            .args(["-o", "host=DC0_C0_H0"])
            .args(["-o", "stop_wait=20", "-o", "start_wait=10"])
            .arg(AGENT),
    )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.contains("passed all tests") {
        return Err(format!("ocf-tester on {AGENT}:\n{text}\n{}", sim.log_tail(30)));
    }
    if text.contains(sim.ready("password")) {
        return Err("the password leaked into the agent's output".into());
    }
    let vm = sim.vm("DC0_C0_RP0_VM0");
    if vm["power_state"] != "poweredOff" {
        return Err(format!("after ocf-tester's final stop the simulator shows {vm}"));
    }
    Ok(Checked::Passed("passed all tests; the VM off afterwards".into()))
}

fn pacemaker_runs_the_installed_agent() -> Result<Checked, String> {
    if !common::is_root() {
        return Err("needs root (mount namespaces, the installed package)".into());
    }
    for tool in [
        "corosync",
        "pacemakerd",
        "cibadmin",
        "crm_resource",
        "crm_mon",
        "nsenter",
        "unshare",
    ] {
        common::require_tool(tool);
    }
    // No AgentInstall: ocf:vmha:vm is the package's own file.
    one_node::cycle(Mode::VCenter, PROVIDER);
    one_node::cycle(Mode::Esx, PROVIDER);
    Ok(Checked::Passed("vCenter and ESX-direct cycles with ocf:vmha:vm".into()))
}
