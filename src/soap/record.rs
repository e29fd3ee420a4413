//! `--record DIR`: every exchange written as one text file, secrets redacted.
//!
//! File format (`NNNN-Method.txt`):
//! ```text
//! vmha-recording 1
//! label: <free text, e.g. "simulated: vcsim (govmomi 0.24.2), vCenter mode">
//! method: Login
//! status: 200
//! --- request
//! <soapenv:Envelope ...>
//! --- response
//! <soapenv:Envelope ...>
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub const REDACTED: &str = "(redacted)";

#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    label: String,
    seq: AtomicU32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub status: u16,
    pub request: String,
    pub response: String,
}

impl Recorder {
    pub fn new(dir: &Path, label: &str) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        // Continue numbering after what is already there, so several commands can record one scenario.
        let existing = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.get(..4)?.parse::<u32>().ok()))
            .max()
            .unwrap_or(0);
        Ok(Recorder {
            dir: dir.to_path_buf(),
            label: label.to_string(),
            seq: AtomicU32::new(existing),
        })
    }

    /// The directory the exchanges go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn write(&self, ex: &Exchange) -> std::io::Result<()> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let path = self.dir.join(format!("{n:04}-{}.txt", ex.method));
        let text = format!(
            "vmha-recording 1\nlabel: {}\nmethod: {}\nstatus: {}\n--- request\n{}\n--- response\n{}\n",
            self.label,
            ex.method,
            ex.status,
            redact(&ex.request),
            redact(&ex.response)
        );
        std::fs::write(path, text)
    }
}

/// Blanks the contents of elements that carry secrets: the Login password and session keys.
pub fn redact(xml: &str) -> String {
    let mut out = xml.to_string();
    for tag in ["password", "sessionId", "key"] {
        out = redact_element(&out, tag, |ctx| {
            tag != "key" || ctx.contains("<LoginResponse") || ctx.contains("currentSession")
        });
    }
    out
}

fn redact_element(xml: &str, tag: &str, applies: impl Fn(&str) -> bool) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = start + open.len();
        let Some(end) = rest[after..].find(&close) else {
            break;
        };
        out.push_str(&rest[..after]);
        if applies(xml) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[after..after + end]);
        }
        rest = &rest[after + end..];
    }
    out.push_str(rest);
    out
}

/// Reads one recording file back.
pub fn parse_exchange(text: &str) -> Option<Exchange> {
    let (head, body) = text.split_once("\n--- request\n")?;
    let (request, response) = body.split_once("\n--- response\n")?;
    let field = |k: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")).map(str::to_string))
    };
    Some(Exchange {
        method: field("method")?,
        status: field("status")?.parse().ok()?,
        request: request.to_string(),
        response: response.trim_end_matches('\n').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_and_session_key_only() {
        let req = "<Login><_this type=\"SessionManager\">SessionManager</_this><userName>u</userName><password>s3cr&amp;t</password></Login>";
        let r = redact(req);
        assert!(!r.contains("s3cr"));
        assert!(r.contains("<userName>u</userName>"));
        let resp = "<LoginResponse><returnval><key>52eec005</key><userName>root</userName></returnval></LoginResponse>";
        assert!(!redact(resp).contains("52eec005"));
        let check = "<HasPrivilegeOnEntities><sessionId>52eec005</sessionId></HasPrivilegeOnEntities>";
        assert!(!redact(check).contains("52eec005"));
        let other = "<RetrievePropertiesExResponse><key>vm-1</key></RetrievePropertiesExResponse>";
        assert_eq!(redact(other), other);
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::new(dir.path(), "unit").unwrap();
        let ex = Exchange {
            method: "Logout".into(),
            status: 200,
            request: "<a/>".into(),
            response: "<b/>".into(),
        };
        rec.write(&ex).unwrap();
        let file = dir.path().join("0001-Logout.txt");
        let back = parse_exchange(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert_eq!(back, ex);
        // A second recorder in the same folder continues the numbering.
        Recorder::new(dir.path(), "unit").unwrap().write(&ex).unwrap();
        assert!(dir.path().join("0002-Logout.txt").exists());
    }
}
