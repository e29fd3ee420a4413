//! A Pacemaker node for tests: corosync + pacemakerd inside a private mount namespace (and optionally a network
//! namespace), so the node's /var/lib/pacemaker, /var/lib/corosync, /run, /dev/shm and logs are its own and
//! vanish with it. Every process is started here and stopped by its PID; leftovers are found by their mount
//! namespace, never by name.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Makes the node's private state and then waits on stdin, holding the mount namespace open.
const HOLDER_SCRIPT: &str = r#"
set -e
d="$1"
mount -t tmpfs -o mode=0755 vmha-pcmk /var/lib/pacemaker
for sub in cib pengine blackbox cores; do mkdir -p /var/lib/pacemaker/$sub; done
cp "$d/cib.xml" /var/lib/pacemaker/cib/cib.xml
chown -R hacluster:haclient /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox /var/lib/pacemaker/cores
chmod 750 /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox /var/lib/pacemaker/cores
chmod 600 /var/lib/pacemaker/cib/cib.xml
mount --bind "$d/log" /var/log/pacemaker
mount -t tmpfs -o mode=0755 vmha-run /run
mkdir -p /run/lock
ln -s /dev/shm /run/shm
mount -t tmpfs -o mode=1777 vmha-shm /dev/shm
mount -t tmpfs -o mode=0755 vmha-coro /var/lib/corosync
echo ready
exec cat >/dev/null
"#;

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    /// Network namespace name, if the node has its own.
    pub netns: Option<String>,
    holder: Child,
    holder_stdin: Option<ChildStdin>,
    corosync: Option<Child>,
    pacemakerd: Option<Child>,
}

pub fn cib_xml(extra_options: &str) -> String {
    // crm_feature_set must not be newer than the daemons' (3.16.1 in Debian 12), or no DC is ever elected.
    format!(
        r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
        {extra_options}
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
"#
    )
}

/// corosync.conf for `nodes` = [(name, address)]. Nothing may follow `{` on a line.
pub fn corosync_conf(nodes: &[(&str, &str)], log: &Path) -> String {
    let mut list = String::new();
    for (i, (name, addr)) in nodes.iter().enumerate() {
        list.push_str(&format!(
            "    node {{\n        name: {name}\n        nodeid: {}\n        ring0_addr: {addr}\n    }}\n",
            i + 1
        ));
    }
    let two_node = if nodes.len() == 2 { "    two_node: 1\n" } else { "" };
    format!(
        "totem {{\n    version: 2\n    cluster_name: vmha-test\n    token: 1000\n}}\n\
         nodelist {{\n{list}}}\n\
         quorum {{\n    provider: corosync_votequorum\n{two_node}}}\n\
         logging {{\n    to_logfile: yes\n    logfile: {}\n    to_stderr: no\n    to_syslog: no\n    timestamp: on\n}}\n",
        log.display()
    )
}

fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => return false,
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Runs a command with a deadline; kills it (by its PID) if it overruns.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !wait_child(&mut child, timeout) {
        let _ = child.kill();
    }
    child.wait_with_output().expect("collect output")
}

impl Node {
    /// Prepares the node's directory and namespaces; `conf` is its corosync.conf, `cib` its seeded CIB.
    pub fn new(name: &str, dir: &Path, netns: Option<&str>, conf: &str, cib: &str) -> Node {
        fs::create_dir_all(dir.join("log")).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("corosync.conf"), conf).unwrap();
        fs::write(dir.join("cib.xml"), cib).unwrap();
        let st = Command::new("chown")
            .args(["hacluster:haclient", &dir.join("log").display().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "chown hacluster:haclient failed");
        fs::set_permissions(dir.join("log"), fs::Permissions::from_mode(0o770)).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg("unshare");
                c
            }
            None => Command::new("unshare"),
        };
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            HOLDER_SCRIPT,
            "holder",
        ])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(fs::File::create(dir.join("holder.err")).unwrap()))
        .process_group(0);
        let mut holder = cmd.spawn().expect("start the namespace holder");
        let stdin = holder.stdin.take();
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!(
                "node {name}: namespace setup failed: {}",
                fs::read_to_string(dir.join("holder.err")).unwrap_or_default()
            );
        }
        Node {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            netns: netns.map(str::to_string),
            holder,
            holder_stdin: stdin,
            corosync: None,
            pacemakerd: None,
        }
    }

    /// A command that runs inside the node's namespaces.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.holder.id())).arg("--mount");
        if self.netns.is_some() {
            c.arg("--net");
        }
        c.arg("--").arg(program);
        c.env_remove("OCF_RESKEY_password");
        c
    }

    /// Runs a cluster tool inside the node (30 s bound); returns its output.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        run_with_timeout(self.command(program).args(args), Duration::from_secs(30))
    }

    /// Waits until the cluster has nothing left to do (`crm_resource --wait`).
    pub fn settle(&self, timeout: Duration) {
        let secs = format!("{}s", timeout.as_secs());
        let out = run_with_timeout(
            self.command("crm_resource").args(["--wait", "--timeout", &secs]),
            timeout + Duration::from_secs(5),
        );
        assert!(
            out.status.success(),
            "{}: the cluster did not settle within {timeout:?}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(60)
        );
    }

    pub fn tool_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.tool(program, args);
        assert!(
            out.status.success(),
            "{}: {program} {args:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `cibadmin --create` of `xml` in the CIB section `scope` (resources, constraints).
    pub fn cib_create(&self, scope: &str, xml: &str) {
        self.tool_ok("cibadmin", &["--create", "--scope", scope, "--xml-text", xml]);
    }

    fn daemon(&self, program: &str, args: &[&str], log: &str) -> Child {
        let out = fs::File::create(self.dir.join(log)).unwrap();
        self.command(program)
            .args(args)
            .env("PCMK_logfile", "/var/log/pacemaker/pacemaker.log")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
    }

    pub fn start_corosync(&mut self) {
        let conf = self.dir.join("corosync.conf").display().to_string();
        let check = self.tool("corosync", &["-t", "-c", &conf]);
        assert!(
            check.status.success(),
            "corosync.conf rejected: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        self.corosync = Some(self.daemon("corosync", &["-f", "-c", &conf], "corosync.out"));
    }

    pub fn start_pacemaker(&mut self) {
        self.pacemakerd = Some(self.daemon("pacemakerd", &[], "pacemakerd.out"));
    }

    /// Waits until `corosync-quorumtool -s` says quorate.
    pub fn wait_quorate(&self, timeout: Duration) {
        self.wait_for(timeout, "corosync quorate", || {
            let o = self.tool("corosync-quorumtool", &["-s"]);
            String::from_utf8_lossy(&o.stdout).contains("Quorate:          Yes")
        });
    }

    /// Waits until a DC is elected (`crm_mon` names one); returns its name.
    pub fn wait_dc(&self, timeout: Duration) -> String {
        let mut dc = String::new();
        self.wait_for(timeout, "a DC elected", || {
            let o = run_with_timeout(
                self.command("crm_mon").args(["--one-shot", "--output-as=xml"]),
                Duration::from_secs(5),
            );
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            match text.find("<current_dc present=\"true\"") {
                Some(i) => {
                    let tag = &text[i..text[i..].find('>').map_or(text.len(), |e| i + e)];
                    dc = tag
                        .split("name=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_string();
                    true
                }
                None => false,
            }
        });
        dc
    }

    /// Waits until the CIB's status section holds a successful recurring monitor of `rsc` on this node: the
    /// start has finished and Pacemaker watches the resource.
    pub fn wait_monitor_ok(&self, rsc: &str, timeout: Duration) {
        self.wait_monitor_ok_on(&self.name.clone(), rsc, timeout);
    }

    /// As [`Node::wait_monitor_ok`], for the resource on node `on` (asked through this node's CIB).
    pub fn wait_monitor_ok_on(&self, on: &str, rsc: &str, timeout: Duration) {
        let xpath = format!(
            "//node_state[@uname='{on}']//lrm_resource[@id='{rsc}']/lrm_rsc_op[@operation='monitor' and @interval!='0' and @rc-code='0']"
        );
        self.wait_for(timeout, &format!("a successful recurring monitor of {rsc}"), || {
            self.tool("cibadmin", &["--query", "--xpath", &xpath]).status.success()
        });
    }

    /// Waits until `crm_mon` shows every node in `names` online.
    pub fn wait_online(&self, names: &[&str], timeout: Duration) {
        self.wait_for(timeout, &format!("nodes {names:?} online"), || {
            let o = run_with_timeout(
                self.command("crm_mon").args(["--one-shot", "--output-as=xml"]),
                Duration::from_secs(5),
            );
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            names.iter().all(|n| {
                text.find(&format!("<node name=\"{n}\""))
                    .map(|i| {
                        let tag = &text[i..text[i..].find('>').map_or(text.len(), |e| i + e)];
                        tag.contains("online=\"true\"")
                    })
                    .unwrap_or(false)
            })
        });
    }

    pub fn wait_for(&self, timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok() {
            if Instant::now() >= deadline {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let mut s = String::new();
        for f in ["log/pacemaker.log", "corosync.log", "pacemakerd.out", "corosync.out"] {
            let text = fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            s.push_str(&format!(
                "--- {} {f} ---\n{}\n",
                self.name,
                all[all.len().saturating_sub(lines)..].join("\n")
            ));
        }
        s
    }

    /// PIDs of every process in this node's mount namespace except the holder.
    fn members(&self) -> Vec<u32> {
        namespace_members(self.holder.id())
    }

    /// The PID of the process that holds the node's mount namespace (for [`kill_namespace`] from another
    /// thread, e.g. a fence that must take the node down at once).
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// Kills the whole stack at once (SIGKILL), as a crashed node.
    pub fn crash(&mut self) {
        kill_namespace(self.holder.id());
        for c in [self.pacemakerd.as_mut(), self.corosync.as_mut()].into_iter().flatten() {
            let _ = c.wait();
        }
    }

    /// Orderly shutdown: pacemakerd first (it stops its resources and subdaemons), then corosync, then anything
    /// left in the namespace, then the holder. Returns how long pacemaker took to stop.
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(p) = self.pacemakerd.as_mut()
            && matches!(p.try_wait(), Ok(None))
        {
            signal(p.id(), "TERM");
            if !wait_child(p, Duration::from_secs(60)) {
                eprintln!("{}: pacemakerd did not stop within 60 s; killing it", self.name);
                let _ = p.kill();
                let _ = p.wait();
            }
        }
        let took = started.elapsed();
        if let Some(c) = self.corosync.as_mut()
            && matches!(c.try_wait(), Ok(None))
        {
            signal(c.id(), "TERM");
            if !wait_child(c, Duration::from_secs(15)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for pid in self.members() {
            signal(pid, "KILL");
        }
        drop(self.holder_stdin.take());
        if !wait_child(&mut self.holder, Duration::from_secs(5)) {
            let _ = self.holder.kill();
            let _ = self.holder.wait();
        }
        took
    }
}

/// PIDs of every process in `holder`'s mount namespace except the holder itself.
pub fn namespace_members(holder: u32) -> Vec<u32> {
    let Ok(ns) = fs::read_link(format!("/proc/{holder}/ns/mnt")) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid != holder && fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().as_ref() == Some(&ns) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs every process in `holder`'s mount namespace but the holder: the node's stack dies at once.
pub fn kill_namespace(holder: u32) {
    for pid in namespace_members(holder) {
        // SAFETY: kill(2) on a PID found in the node's own mount namespace; no memory is touched.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.holder.try_wait(), Ok(None)) {
            if std::thread::panicking() {
                eprintln!("{}", self.log_tail(80));
            }
            self.stop();
        }
    }
}

/// The agent shim for Pacemaker, under a test-only provider so an installed `vmha` provider is never touched.
pub struct AgentInstall {
    dir: PathBuf,
}

pub const PROVIDER: &str = "vmha-test";

impl AgentInstall {
    pub fn install() -> AgentInstall {
        let dir = PathBuf::from("/usr/lib/ocf/resource.d").join(PROVIDER);
        fs::create_dir_all(&dir).unwrap();
        super::common::write_shim(&dir.join("vm"));
        AgentInstall { dir }
    }
}

impl Drop for AgentInstall {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The agent's primitive as CIB XML (id vm1), with the operations the tests use.
pub struct Primitive<'a> {
    pub url: &'a str,
    pub user: &'a str,
    pub thumbprint: &'a str,
    pub password_file: &'a Path,
    /// Empty: no hostmap (ESX-direct: the connected host).
    pub hostmap: &'a str,
    /// How the VM is named: "name", "vmx" or "uuid".
    pub vm_key: &'a str,
    pub vm: &'a str,
    pub allow_migrate: bool,
    pub monitor_interval_s: u64,
    /// The OCF provider: PROVIDER (this build, installed by AgentInstall) or "vmha" (the package's agent).
    pub provider: &'a str,
}

impl Primitive<'_> {
    pub fn xml(&self) -> String {
        format!(
            r#"<primitive id="vm1" class="ocf" provider="{provider}" type="vm">
  <instance_attributes id="vm1-ia">
    <nvpair id="vm1-url" name="url" value="{url}"/>
    <nvpair id="vm1-user" name="user" value="{user}"/>
    <nvpair id="vm1-password_file" name="password_file" value="{pw}"/>
    <nvpair id="vm1-thumbprint" name="thumbprint" value="{tp}"/>
    <nvpair id="vm1-{key}" name="{key}" value="{vm}"/>
    {hostmap}
    <nvpair id="vm1-start_wait" name="start_wait" value="10"/>
    <nvpair id="vm1-stop_wait" name="stop_wait" value="20"/>
    <nvpair id="vm1-request_timeout" name="request_timeout" value="15"/>
  </instance_attributes>
  <meta_attributes id="vm1-meta">
    <nvpair id="vm1-allow-migrate" name="allow-migrate" value="{allow}"/>
    <nvpair id="vm1-resource-stickiness" name="resource-stickiness" value="100"/>
  </meta_attributes>
  <operations>
    <op id="vm1-monitor" name="monitor" interval="{interval}s" timeout="30s"/>
    <op id="vm1-start" name="start" interval="0s" timeout="60s"/>
    <op id="vm1-stop" name="stop" interval="0s" timeout="60s"/>
    <op id="vm1-migrate_to" name="migrate_to" interval="0s" timeout="60s"/>
    <op id="vm1-migrate_from" name="migrate_from" interval="0s" timeout="30s"/>
  </operations>
</primitive>"#,
            url = self.url,
            user = self.user,
            pw = self.password_file.display(),
            tp = self.thumbprint,
            key = self.vm_key,
            vm = self.vm,
            hostmap = if self.hostmap.is_empty() {
                String::new()
            } else {
                format!(r#"<nvpair id="vm1-hostmap" name="hostmap" value="{}"/>"#, self.hostmap)
            },
            allow = self.allow_migrate,
            interval = self.monitor_interval_s,
            provider = self.provider,
        )
    }
}
