//! Answers to the plugin's callouts, given with `--callout-response`.
//!
//! An answer is `;`-separated `key=value` parts (`\;` is a literal `;`):
//!
//! | key | meaning |
//! |---|---|
//! | `cluster=NAME` | answer only callouts to this cluster (otherwise: the next callout) |
//! | `status=N` | HTTP status (default 200) |
//! | `header=NAME: VALUE` | an HTTP response header (repeatable) |
//! | `trailer=NAME: VALUE` | an HTTP response trailer (repeatable) |
//! | `body=TEXT` or `body=@FILE` | the HTTP body or the gRPC response message |
//! | `grpc-status=N` | gRPC status (default 0: the message is the answer) |
//! | `grpc-message=TEXT` | gRPC status message of a failed call |
//! | `fail=reset` or `fail=timeout` | the call fails (HTTP: no response; gRPC: UNAVAILABLE or DEADLINE_EXCEEDED) |
//! | `times=N` or `times=*` | answer that many callouts it fits (default 1), or every one |
//!
//! `status`, `header` and `trailer` make an answer HTTP-only, `grpc-status`
//! and `grpc-message` gRPC-only; other answers fit either kind.

use super::input::parse_header;
use crate::files::{MAX_BODY_BYTES, read_bounded};
use anyhow::Result;
use polyhost::{GrpcResult, HeaderMap, HttpCallResult};
use std::path::Path;

/// Which kind of callout an answer fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fits {
    Http,
    Grpc,
    Either,
}

/// How a failed call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Reset,
    Timeout,
}

/// One `--callout-response`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The text as given, to show what answered a callout.
    pub spec: String,
    cluster: Option<String>,
    fits: Fits,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    body: Vec<u8>,
    grpc_status: u32,
    grpc_message: String,
    failure: Option<Failure>,
    /// How many more callouts it answers; `None`: every one it fits.
    remaining: Option<u32>,
}

/// Splits at `;` not preceded by `\`, unescaping `\;`.
fn split_parts(spec: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                chars.next();
                parts.last_mut().expect("one part").push(';');
            }
            ';' => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

impl Answer {
    /// Parses one `--callout-response`.
    ///
    /// # Errors
    /// A part that is not `key=value`, an unknown key, a bad number or
    /// header, an unreadable body file, or HTTP and gRPC parts mixed; the
    /// message names the part.
    pub fn parse(spec: &str) -> Result<Answer> {
        let mut answer = Answer {
            spec: spec.to_string(),
            cluster: None,
            fits: Fits::Either,
            status: None,
            headers: Vec::new(),
            trailers: Vec::new(),
            body: Vec::new(),
            grpc_status: 0,
            grpc_message: String::new(),
            failure: None,
            remaining: Some(1),
        };
        let bad =
            |part: &str, why: &str| anyhow::anyhow!("--callout-response `{spec}`: `{part}` {why}");
        for part in split_parts(spec) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((key, value)) = part.split_once('=') else {
                return Err(bad(part, "is not key=value"));
            };
            let kind = match key.trim() {
                "cluster" => {
                    answer.cluster = Some(value.to_string());
                    Fits::Either
                }
                "status" => {
                    match value.parse::<u16>() {
                        Ok(n) if (100..=999).contains(&n) => answer.status = Some(n),
                        _ => return Err(bad(part, "is not an HTTP status from 100 to 999")),
                    }
                    Fits::Http
                }
                "header" | "trailer" => {
                    let pair = parse_header(value).map_err(|e| bad(part, &e.to_string()))?;
                    if key == "header" {
                        answer.headers.push(pair);
                    } else {
                        answer.trailers.push(pair);
                    }
                    Fits::Http
                }
                "body" => {
                    answer.body = match value.strip_prefix('@') {
                        Some(path) => {
                            read_bounded("callout body", Path::new(path), MAX_BODY_BYTES)?
                        }
                        None => value.as_bytes().to_vec(),
                    };
                    Fits::Either
                }
                "grpc-status" => {
                    answer.grpc_status = value
                        .parse::<u32>()
                        .ok()
                        .filter(|s| *s <= 16)
                        .ok_or_else(|| bad(part, "is not a gRPC status from 0 to 16"))?;
                    Fits::Grpc
                }
                "grpc-message" => {
                    answer.grpc_message = value.to_string();
                    Fits::Grpc
                }
                "fail" => {
                    answer.failure = Some(match value {
                        "reset" => Failure::Reset,
                        "timeout" => Failure::Timeout,
                        _ => return Err(bad(part, "is not `fail=reset` or `fail=timeout`")),
                    });
                    Fits::Either
                }
                "times" => {
                    answer.remaining = match value.trim() {
                        "*" => None,
                        n => Some(
                            n.parse::<u32>()
                                .ok()
                                .filter(|n| *n > 0)
                                .ok_or_else(|| bad(part, "is not a positive count or `*`"))?,
                        ),
                    };
                    Fits::Either
                }
                _ => {
                    return Err(bad(
                        part,
                        "has an unknown key (known: cluster, status, header, trailer, body, grpc-status, grpc-message, fail, times)",
                    ));
                }
            };
            answer.fits = match (answer.fits, kind) {
                (Fits::Http, Fits::Grpc) | (Fits::Grpc, Fits::Http) => {
                    return Err(bad(part, "mixes an HTTP answer with a gRPC one"));
                }
                (Fits::Either, k) => k,
                (f, _) => f,
            };
        }
        Ok(answer)
    }

    fn fits(&self, grpc: bool, cluster: &str) -> bool {
        let kind = match self.fits {
            Fits::Either => true,
            Fits::Http => !grpc,
            Fits::Grpc => grpc,
        };
        kind && self.cluster.as_deref().is_none_or(|c| c == cluster)
    }

    /// The answer to an HTTP callout.
    pub fn http(&self) -> HttpCallResult {
        match self.failure {
            Some(Failure::Reset) => HttpCallResult::Failure,
            Some(Failure::Timeout) => HttpCallResult::Timeout,
            None => {
                let mut headers = HeaderMap::new();
                headers.add(":status", self.status.unwrap_or(200).to_string());
                for (k, v) in &self.headers {
                    headers.add(k, v);
                }
                HttpCallResult::Response {
                    headers,
                    body: self.body.clone(),
                    trailers: self.trailers.iter().cloned().collect(),
                }
            }
        }
    }

    /// The answer to a unary gRPC call.
    pub fn grpc(&self) -> GrpcResult {
        match (self.failure, self.grpc_status) {
            (Some(Failure::Reset), _) => GrpcResult::Err {
                status: 14,
                message: "upstream reset".into(),
            },
            (Some(Failure::Timeout), _) => GrpcResult::Err {
                status: 4,
                message: "deadline exceeded".into(),
            },
            (None, 0) => GrpcResult::Ok(self.body.clone()),
            (None, status) => GrpcResult::Err {
                status,
                message: self.grpc_message.clone(),
            },
        }
    }
}

/// The answers not used up yet. Each answers one callout (or as many as
/// its `times` says): the first for the callout's cluster, else the first
/// without a cluster that fits its kind.
#[derive(Debug, Default)]
pub struct Answers {
    unused: Vec<Answer>,
    /// Whether any answer was given: without one, every callout gets the
    /// default answer (HTTP 200 with no body, gRPC UNAVAILABLE).
    given: bool,
}

impl Answers {
    /// Parses every `--callout-response`.
    ///
    /// # Errors
    /// The first malformed one.
    pub fn parse(specs: &[String]) -> Result<Answers> {
        let unused = specs
            .iter()
            .map(|s| Answer::parse(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(Answers {
            given: !unused.is_empty(),
            unused,
        })
    }

    /// The answer for a callout to `cluster`, removed from the unused
    /// ones; `None` leaves the callout unanswered.
    pub fn take(&mut self, grpc: bool, cluster: &str) -> Option<Answer> {
        if !self.given {
            return Some(Answer::parse("").expect("the empty answer parses"));
        }
        let by_cluster = self
            .unused
            .iter()
            .position(|a| a.cluster.as_deref() == Some(cluster) && a.fits(grpc, cluster));
        let index = by_cluster.or_else(|| {
            self.unused
                .iter()
                .position(|a| a.cluster.is_none() && a.fits(grpc, cluster))
        })?;
        let answer = &mut self.unused[index];
        match answer.remaining {
            None => Some(answer.clone()),
            Some(n) if n > 1 => {
                answer.remaining = Some(n - 1);
                Some(answer.clone())
            }
            Some(_) => Some(self.unused.remove(index)),
        }
    }

    /// Whether callouts get the default answer (no `--callout-response`).
    pub fn defaults(&self) -> bool {
        !self.given
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_every_part_and_name_a_bad_one() {
        let a = Answer::parse("status=503;header=x-a: 1\\;2;body=nope;cluster=auth").unwrap();
        let HttpCallResult::Response { headers, body, .. } = a.http() else {
            panic!("a response")
        };
        assert_eq!(headers.get_str(":status"), Some("503"));
        assert_eq!(headers.get_str("x-a"), Some("1;2"));
        assert_eq!(body, b"nope");
        let err = Answer::parse("status=200;bogus").unwrap_err().to_string();
        assert!(err.contains("`bogus` is not key=value"), "{err}");
        let err = Answer::parse("status=20x").unwrap_err().to_string();
        assert!(err.contains("`status=20x` is not an HTTP status"), "{err}");
        let err = Answer::parse("status=200;grpc-status=3")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mixes an HTTP answer with a gRPC one"),
            "{err}"
        );
    }

    #[test]
    fn answers_match_by_cluster_then_in_order() {
        let mut answers = Answers::parse(&[
            "status=201".to_string(),
            "cluster=auth;status=202".to_string(),
            "grpc-status=5".to_string(),
        ])
        .unwrap();
        assert_eq!(answers.take(false, "auth").unwrap().status, Some(202));
        assert!(matches!(
            answers.take(true, "g").unwrap().grpc(),
            GrpcResult::Err { status: 5, .. }
        ));
        assert_eq!(answers.take(false, "other").unwrap().status, Some(201));
        assert!(answers.take(false, "other").is_none());
    }

    #[test]
    fn an_answer_can_serve_several_callouts() {
        let mut answers =
            Answers::parse(&["status=201;times=2".to_string(), "status=202".to_string()]).unwrap();
        let statuses: Vec<_> = (0..4)
            .map(|_| answers.take(false, "c").map(|a| a.status))
            .collect();
        assert_eq!(
            statuses,
            vec![Some(Some(201)), Some(Some(201)), Some(Some(202)), None]
        );
        let mut always = Answers::parse(&["cluster=c;status=204;times=*".to_string()]).unwrap();
        for _ in 0..5 {
            assert_eq!(always.take(false, "c").unwrap().status, Some(204));
        }
        let err = Answer::parse("times=0").unwrap_err().to_string();
        assert!(err.contains("is not a positive count or `*`"), "{err}");
    }
}
