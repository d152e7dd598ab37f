//! A minimal QMP (QEMU Machine Protocol) client: greeting, capabilities handshake, then one
//! command at a time, matched to its reply by `id`; asynchronous events are skipped.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

/// A QMP session over a reader and a writer (the two halves of a connected socket).
pub(crate) struct Qmp<R, W> {
    reader: R,
    writer: W,
    next_id: u64,
}

impl<R: BufRead, W: Write> Qmp<R, W> {
    /// Reads QEMU's greeting and enters command mode (`qmp_capabilities`).
    pub(crate) fn handshake(reader: R, writer: W) -> Result<Self, String> {
        let mut qmp = Qmp { reader, writer, next_id: 0 };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("expected a QMP greeting, got {greeting}"));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` and returns the reply's `return` value. An `error` reply
    /// becomes `Err("Class: description")`.
    pub(crate) fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| format!("sending: {e}"))?;
        loop {
            let mut reply = self.read_message()?;
            if reply.get("event").is_some() || reply.get("id") != Some(&json!(id)) {
                continue;
            }
            if let Some(value) = reply.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = reply.get("error") {
                let class = error.get("class").and_then(Value::as_str).unwrap_or("Error");
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("(no description)");
                return Err(format!("{class}: {desc}"));
            }
            return Err(format!("unexpected reply {reply}"));
        }
    }

    /// Reads one JSON message (QMP sends one per line).
    fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).map_err(|e| format!("receiving: {e}"))?;
            if n == 0 {
                return Err("QEMU closed the QMP connection".into());
            }
            if !line.trim().is_empty() {
                return serde_json::from_str(line.trim())
                    .map_err(|e| format!("bad JSON from QEMU ({e}): {}", line.trim()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;
    use std::os::unix::net::UnixStream;
    use std::thread;

    /// A fake QEMU: sends the greeting, then answers each request with the canned lines of `script`
    /// (`{id}` is replaced by the request's id), and returns the requests it saw.
    fn fake_qemu(server: UnixStream, script: Vec<Vec<&'static str>>) -> thread::JoinHandle<Vec<Value>> {
        thread::spawn(move || {
            let mut writer = server.try_clone().unwrap();
            let mut reader = BufReader::new(server);
            writeln!(writer, r#"{{"QMP": {{"version": {{"qemu": {{"major": 7}}}}, "capabilities": []}}}}"#).unwrap();
            let mut seen = Vec::new();
            for replies in script {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let request: Value = serde_json::from_str(&line).unwrap();
                let id = request["id"].to_string();
                for reply in replies {
                    write!(writer, "{}\r\n", reply.replace("{id}", &id)).unwrap();
                }
                seen.push(request);
            }
            seen
        })
    }

    fn connect(
        script: Vec<Vec<&'static str>>,
    ) -> (Qmp<BufReader<UnixStream>, UnixStream>, thread::JoinHandle<Vec<Value>>) {
        let (client, server) = UnixStream::pair().unwrap();
        let fake = fake_qemu(server, script);
        let qmp = Qmp::handshake(BufReader::new(client.try_clone().unwrap()), client).unwrap();
        (qmp, fake)
    }

    #[test]
    fn handshake_then_command_skipping_events_and_stale_replies() {
        let (mut qmp, fake) = connect(vec![
            vec![r#"{"return": {}, "id": {id}}"#],
            vec![
                r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}"#,
                r#"{"return": {"stale": true}, "id": 999}"#,
                r#"{"return": {}, "id": {id}}"#,
            ],
            vec![r#"{"return": {"status": "running", "running": true}, "id": {id}}"#],
        ]);
        assert_eq!(qmp.execute("system_powerdown", None).unwrap(), json!({}));
        let status = qmp.execute("query-status", Some(json!({}))).unwrap();
        assert_eq!(status["status"], "running");
        drop(qmp);
        let seen = fake.join().unwrap();
        assert_eq!(seen[0]["execute"], "qmp_capabilities");
        assert_eq!(seen[1]["execute"], "system_powerdown");
        assert!(seen[1].get("arguments").is_none());
        assert_eq!(seen[2]["arguments"], json!({}));
        assert_ne!(seen[1]["id"], seen[2]["id"]);
    }

    #[test]
    fn error_replies_and_hangups_are_errors() {
        let (mut qmp, fake) = connect(vec![
            vec![r#"{"return": {}, "id": {id}}"#],
            vec![
                r#"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": {id}}"#,
            ],
        ]);
        assert_eq!(qmp.execute("nope", None).unwrap_err(), "CommandNotFound: The command nope has not been found");
        fake.join().unwrap();
        let err = qmp.execute("query-status", None).unwrap_err();
        assert!(err.contains("closed") || err.contains("sending"), "{err}");
    }

    #[test]
    fn rejects_a_peer_that_is_not_qmp() {
        let (client, mut server) = UnixStream::pair().unwrap();
        writeln!(server, r#"{{"hello": 1}}"#).unwrap();
        let err = Qmp::handshake(BufReader::new(client.try_clone().unwrap()), client).err().unwrap();
        assert!(err.contains("greeting"), "{err}");
    }
}
