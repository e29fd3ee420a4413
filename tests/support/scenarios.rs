//! The scenarios both tiers run: live against the extended vcsim (tests/e2e.rs, which also stages the
//! simulator before each scenario and checks its own state afterwards), and replayed from
//! `recordings/<name>/` through wiremock (tests/replay.rs). Both assert the same outputs, and both
//! check, through `Scenario::check_changes`, that a read-only scenario called no state-changing method.

/// One vmha invocation and what it must produce.
pub struct Step {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout_has: Vec<&'static str>,
    pub stderr_has: Vec<&'static str>,
    /// Log in with a wrong password instead of the right one.
    pub bad_password: bool,
}

impl Step {
    /// The password this step logs in with, given the right one.
    pub fn password<'a>(&self, right: &'a str) -> &'a str {
        if self.bad_password { "not-the-password" } else { right }
    }
}

pub struct Scenario {
    pub name: &'static str,
    /// Changes nothing: calls no state-changing method (and a scenario that calls none must say so).
    pub read_only: bool,
    pub steps: Vec<Step>,
}

/// The SOAP methods that change a VM or the inventory.
const STATE_CHANGING: &[&str] = &[
    "PowerOnVM_Task",
    "PowerOffVM_Task",
    "ShutdownGuest",
    "RebootGuest",
    "ResetVM_Task",
    "SuspendVM_Task",
    "RegisterVM_Task",
    "UnregisterVM",
    "RelocateVM_Task",
    "MigrateVM_Task",
    "AnswerVM",
    "Destroy_Task",
];

impl Scenario {
    /// Checks the SOAP methods the steps called against `read_only`: a read-only scenario called no
    /// state-changing method, any other called at least one.
    pub fn check_changes<'a>(&self, called: impl IntoIterator<Item = &'a str>) {
        let changing: Vec<&str> = called.into_iter().filter(|m| STATE_CHANGING.contains(m)).collect();
        if self.read_only {
            assert!(
                changing.is_empty(),
                "{}: read-only, yet it called {changing:?}",
                self.name
            );
        } else {
            assert!(
                !changing.is_empty(),
                "{}: called no state-changing method, so it must be marked read_only",
                self.name
            );
        }
    }
}

fn step(args: &[&str], code: i32, stdout_has: &[&'static str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        stdout_has: stdout_has.to_vec(),
        stderr_has: vec![],
        bad_password: false,
    }
}

fn fails(args: &[&str], code: i32, stderr_has: &[&'static str]) -> Step {
    Step {
        stderr_has: stderr_has.to_vec(),
        ..step(args, code, &[])
    }
}

// Inventory names (tests/vcsim/README.md).
pub const VM: &str = "DC0_C0_RP0_VM0";
pub const VM_UUID: &str = "cd0681bf-2f18-5c00-9b9b-8197c0095348";
pub const H1: &str = "DC0_C0_H0";
pub const H2: &str = "DC0_C0_H1";
pub const ESX_VM: &str = "ha-host_VM0";
/// Its files exist on the datastore, but it is not registered at start-up (both modes).
pub const UNREGISTERED_VM: &str = "vmha-unreg";

/// `[LocalDS_0] name/name.vmx`, the vmx path of every simulator VM.
pub fn vmx_path(vm_name: &str) -> String {
    format!("[LocalDS_0] {vm_name}/{vm_name}.vmx")
}

pub fn all() -> Vec<Scenario> {
    let vmx = vmx_path(VM);
    let unreg = vmx_path(UNREGISTERED_VM);
    let vmfs = format!("/vmfs/volumes/LocalDS_0/{VM}/{VM}.vmx");
    vec![
        Scenario {
            name: "vc-check",
            read_only: true,
            steps: vec![step(
                &["check"],
                0,
                &["VMware vCenter Server", "apiType=VirtualCenter", "apiVersion="],
            )],
        },
        Scenario {
            name: "esx-check",
            read_only: true,
            steps: vec![step(&["check"], 0, &["VMware ESX", "apiType=HostAgent"])],
        },
        Scenario {
            name: "vc-bad-password",
            read_only: true,
            steps: vec![Step {
                bad_password: true,
                ..fails(&["check"], 3, &["login refused", "vmha"])
            }],
        },
        Scenario {
            name: "vc-status",
            read_only: true,
            steps: vec![
                step(
                    &["status", "--name", VM, "--json"],
                    0,
                    &[
                        r#""registered":true"#,
                        r#""power_state":"poweredOn""#,
                        r#""host":"DC0_C0_H0""#,
                        r#""heartbeat":"green""#,
                        r#""question":null"#,
                    ],
                ),
                step(
                    &["status", "--vmx", &vmx, "--json"],
                    0,
                    &[r#""name":"DC0_C0_RP0_VM0""#, r#""connection_state":"connected""#],
                ),
                step(
                    &["status", "--vmx", &vmfs],
                    0,
                    &["name: DC0_C0_RP0_VM0", "power_state: poweredOn"],
                ),
                step(
                    &["status", "--uuid", VM_UUID, "--json"],
                    0,
                    &[r#""name":"DC0_C0_RP0_VM0""#],
                ),
                step(&["status", "--vmx", &unreg, "--json"], 0, &[r#""registered":false"#]),
                step(&["status", "--name", "no-such-vm"], 0, &["registered: no"]),
            ],
        },
        Scenario {
            name: "esx-status",
            read_only: true,
            steps: vec![step(
                &["status", "--name", ESX_VM, "--json"],
                0,
                &[r#""registered":true"#, r#""host":"localhost.localdomain""#],
            )],
        },
        Scenario {
            name: "vc-start-unregistered",
            read_only: false,
            steps: vec![step(
                &["start", "--vmx", &unreg, "--host", H2],
                0,
                &[
                    "registered [LocalDS_0] vmha-unreg/vmha-unreg.vmx on DC0_C0_H1",
                    "powered on",
                    "heartbeat green",
                ],
            )],
        },
        Scenario {
            name: "vc-start-idempotent",
            read_only: true,
            steps: vec![step(
                &["start", "--name", VM, "--host", H1],
                0,
                &["already running on DC0_C0_H0"],
            )],
        },
        Scenario {
            name: "vc-start-off-on-host",
            read_only: false,
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H1],
                0,
                &["powered on", "heartbeat green"],
            )],
        },
        Scenario {
            name: "vc-start-relocate",
            read_only: false,
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H2],
                0,
                &["relocating from DC0_C0_H0 to DC0_C0_H1", "powered on"],
            )],
        },
        Scenario {
            name: "vc-start-takeover",
            read_only: false,
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H2],
                0,
                &[
                    "host DC0_C0_H0 is notResponding",
                    "unregistered from DC0_C0_H0",
                    "registered",
                    "I moved it",
                    "powered on",
                ],
            )],
        },
        Scenario {
            name: "vc-start-refused",
            read_only: true,
            steps: vec![fails(
                &["start", "--vmx", &vmx, "--host", H2],
                5,
                &["running on DC0_C0_H0", "nothing changed", "migrate"],
            )],
        },
        Scenario {
            name: "vc-start-question",
            read_only: false,
            steps: vec![step(
                &["start", "--name", VM, "--host", H1],
                0,
                &[
                    "answered question \"This virtual machine might have been moved or copied.\" with \"I moved it\"",
                    "powered on",
                ],
            )],
        },
        Scenario {
            name: "vc-start-other-question",
            read_only: false,
            steps: vec![
                fails(
                    &["start", "--name", VM, "--host", H1],
                    1,
                    &[
                        "The disk is full",
                        "button.retry",
                        "--answer msg.hbacommon.outofspace=CHOICE",
                    ],
                ),
                step(
                    &[
                        "start",
                        "--name",
                        VM,
                        "--host",
                        H1,
                        "--answer",
                        "msg.hbacommon.outofspace=button.retry",
                    ],
                    0,
                    &["with \"Retry\"", "powered on"],
                ),
            ],
        },
        Scenario {
            name: "vc-start-lock-expires",
            read_only: false,
            steps: vec![step(
                &["start", "--vmx", &vmx, "--host", H1],
                0,
                &["files locked", "Failed to lock the file", "powered on"],
            )],
        },
        Scenario {
            name: "vc-start-lock-held",
            read_only: false,
            steps: vec![fails(
                &["start", "--vmx", &vmx, "--host", H1, "--start-wait", "3"],
                1,
                &["still locked", "after 3 s", "Failed to lock the file"],
            )],
        },
        Scenario {
            name: "vc-start-no-heartbeat",
            read_only: false,
            steps: vec![step(
                &["start", "--name", VM, "--host", H1, "--start-wait", "2"],
                0,
                &[
                    "powered on",
                    "no green guest heartbeat after 2 s",
                    "VMware Tools is not reporting",
                ],
            )],
        },
        Scenario {
            name: "vc-start-suspended",
            read_only: false,
            steps: vec![step(
                &["start", "--name", VM, "--host", H1],
                0,
                &["powering on (host DC0_C0_H0)", "powered on", "heartbeat green"],
            )],
        },
        Scenario {
            name: "vc-stop-guest",
            read_only: false,
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1],
                0,
                &["guest shutdown requested", "guest shut down", "stopped"],
            )],
        },
        Scenario {
            name: "vc-stop-tools-unavailable",
            read_only: false,
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1],
                0,
                &["guest shutdown refused: ToolsUnavailable", "powered off", "stopped"],
            )],
        },
        Scenario {
            name: "vc-stop-ignored",
            read_only: false,
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1, "--stop-wait", "2"],
                0,
                &["waiting up to 2 s", "guest still running after 2 s", "powered off"],
            )],
        },
        Scenario {
            name: "vc-stop-idempotent",
            read_only: true,
            steps: vec![
                step(
                    &["stop", "--name", VM, "--host", H1],
                    0,
                    &["already powered off", "stopped"],
                ),
                step(
                    &["stop", "--vmx", &unreg, "--host", H1],
                    0,
                    &["not registered: nothing to stop"],
                ),
            ],
        },
        Scenario {
            // Node-relative: the node standing for H2 neither stops nor reports as its own a VM on H1.
            name: "vc-stop-elsewhere",
            read_only: true,
            steps: vec![
                step(
                    &["stop", "--name", VM, "--host", H2],
                    0,
                    &["runs on DC0_C0_H0, not on this node's host DC0_C0_H1: nothing to stop here"],
                ),
                step(
                    &["monitor", "--name", VM, "--host", H2, "--migration-wait", "0"],
                    14,
                    &["VM now runs on DC0_C0_H0"],
                ),
            ],
        },
        Scenario {
            name: "vc-stop-unregister",
            read_only: false,
            steps: vec![step(
                &["stop", "--vmx", &vmx, "--host", H1, "--unregister"],
                0,
                &["unregistered"],
            )],
        },
        Scenario {
            name: "vc-stop-suspended",
            read_only: false,
            steps: vec![step(
                &["stop", "--name", VM, "--host", H1],
                0,
                &["powering off (suspended)", "stopped"],
            )],
        },
        Scenario {
            name: "esx-start-unregistered",
            read_only: false,
            steps: vec![
                step(
                    &["start", "--vmx", &unreg],
                    0,
                    &[
                        "registered [LocalDS_0] vmha-unreg/vmha-unreg.vmx on localhost.localdomain",
                        "powered on",
                    ],
                ),
                step(&["start", "--vmx", &unreg], 0, &["already running"]),
            ],
        },
        Scenario {
            name: "esx-group-move",
            read_only: false,
            steps: vec![
                step(
                    &["stop", "--vmx", &vmx_path(ESX_VM)],
                    0,
                    &["guest shut down", "unregistered"],
                ),
                step(&["stop", "--vmx", &vmx_path(ESX_VM)], 0, &["not registered"]),
                step(&["start", "--vmx", &vmx_path(ESX_VM)], 0, &["registered", "powered on"]),
            ],
        },
        Scenario {
            name: "esx-stop-keep-registered",
            read_only: false,
            steps: vec![
                step(&["stop", "--name", ESX_VM, "--keep-registered"], 0, &["stopped"]),
                step(
                    &["start", "--name", ESX_VM],
                    0,
                    &["powering on (host localhost.localdomain)", "powered on"],
                ),
            ],
        },
        Scenario {
            name: "esx-stop-suspended",
            read_only: false,
            steps: vec![step(
                &["stop", "--vmx", &vmx_path(ESX_VM)],
                0,
                &["powering off (suspended)", "unregistered", "stopped"],
            )],
        },
        Scenario {
            name: "vc-monitor",
            read_only: true,
            steps: vec![
                step(
                    &["monitor", "--name", VM, "--host", H1],
                    0,
                    &["healthy: poweredOn on DC0_C0_H0, heartbeat green"],
                ),
                step(&["monitor", "--vmx", &unreg, "--host", H1], 10, &["not registered"]),
            ],
        },
        Scenario {
            name: "vc-monitor-off",
            read_only: true,
            steps: vec![step(
                &["monitor", "--name", VM, "--host", H1],
                11,
                &["VM is poweredOff (exit 11)"],
            )],
        },
        Scenario {
            name: "vc-monitor-heartbeat",
            read_only: true,
            steps: vec![step(
                &["monitor", "--name", VM, "--host", H1],
                12,
                &["guest heartbeat is red"],
            )],
        },
        Scenario {
            name: "vc-monitor-gray",
            read_only: true,
            steps: vec![
                step(&["monitor", "--name", VM, "--host", H1], 0, &["[W]", "gray", "healthy"]),
                step(
                    &["monitor", "--name", VM, "--host", H1, "--require-heartbeat"],
                    12,
                    &["--require-heartbeat"],
                ),
            ],
        },
        Scenario {
            name: "vc-monitor-question",
            read_only: true,
            steps: vec![step(
                &["monitor", "--name", VM, "--host", H1],
                13,
                &["question pending", "The disk is full"],
            )],
        },
        Scenario {
            name: "vc-monitor-migrated",
            read_only: false,
            steps: vec![
                step(
                    &["migrate", "--name", VM, "--to-host", H2],
                    0,
                    &["live-migrating from DC0_C0_H0 to DC0_C0_H1", "now on DC0_C0_H1"],
                ),
                step(
                    &["migrate", "--name", VM, "--to-host", H2],
                    0,
                    &["already on DC0_C0_H1"],
                ),
                step(
                    &["monitor", "--name", VM, "--host", H1, "--migration-wait", "1"],
                    14,
                    &["waiting 1 s", "now runs on DC0_C0_H1"],
                ),
                step(&["monitor", "--name", VM, "--host", H2], 0, &["healthy"]),
            ],
        },
        Scenario {
            name: "vc-monitor-host-down",
            read_only: true,
            steps: vec![
                step(
                    &["monitor", "--name", VM, "--host", H1],
                    15,
                    &["host DC0_C0_H0 is notResponding"],
                ),
                fails(
                    &["stop", "--name", VM, "--host", H1],
                    1,
                    &["cannot be stopped from here"],
                ),
            ],
        },
        Scenario {
            name: "esx-monitor-and-migrate",
            read_only: true,
            steps: vec![
                step(
                    &["monitor", "--name", ESX_VM],
                    0,
                    &["healthy: poweredOn on localhost.localdomain"],
                ),
                fails(
                    &["migrate", "--name", ESX_VM, "--to-host", "localhost.localdomain"],
                    2,
                    &["migrate needs vCenter"],
                ),
            ],
        },
    ]
}

/// Checks one run against its step.
pub fn check_step(scenario: &str, i: usize, st: &Step, r: &crate::run::Run) {
    let ctx = format!(
        "{scenario} step {i} (vmha {}):\n--- stdout\n{}--- stderr\n{}",
        st.args.join(" "),
        r.stdout,
        r.stderr
    );
    assert_eq!(r.code, st.code, "exit code, {ctx}");
    for s in &st.stdout_has {
        assert!(r.stdout.contains(s), "stdout lacks {s:?}, {ctx}");
    }
    for s in &st.stderr_has {
        assert!(r.stderr.contains(s), "stderr lacks {s:?}, {ctx}");
    }
}
