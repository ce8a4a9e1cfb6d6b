//! What kind of source a camera URL names; it decides the head of the pipeline.

use std::path::Path;

/// The source of a camera, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// `rtsp://`, `rtsps://`, `rtspt://`, `rtspu://`: rtspsrc with latency and transport.
    Rtsp { url: String },
    /// `/dev/videoN`: v4l2src.
    V4l2 { device: String },
    /// A local file, as a `file://` URI: uridecodebin; paced or replayed per `realtime`.
    File { uri: String },
    /// `http(s)://` and any other URI: uridecodebin, treated as a paced source.
    Uri { uri: String },
}

impl SourceKind {
    /// Whether the source runs on its own clock (paced): frames are dropped rather than
    /// waited for, no frame for a while is a failure, and so is EOS. Files are paced only
    /// with `realtime = true`.
    pub fn is_paced(&self, realtime: bool) -> bool {
        match self {
            SourceKind::File { .. } => realtime,
            _ => true,
        }
    }
}

/// Sorts a camera URL into a source kind; plain paths become `file://` URIs (relative
/// ones against the working directory).
pub fn classify(url: &str) -> Result<SourceKind, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("must not be empty".into());
    }
    match uri_scheme(url) {
        Some(scheme) => {
            let scheme = scheme.to_ascii_lowercase();
            if url.len() <= scheme.len() + 3 || !url[scheme.len()..].starts_with("://") {
                return Err(format!("{url:?} is not a URI of the form scheme://…"));
            }
            Ok(match scheme.as_str() {
                "rtsp" | "rtsps" | "rtspt" | "rtspu" => SourceKind::Rtsp { url: url.to_string() },
                "file" => SourceKind::File { uri: url.to_string() },
                _ => SourceKind::Uri { uri: url.to_string() },
            })
        }
        None if url.starts_with("/dev/video") => Ok(SourceKind::V4l2 {
            device: url.to_string(),
        }),
        None => {
            let path = std::path::absolute(Path::new(url))
                .map_err(|e| format!("{url:?}: cannot make the path absolute: {e}"))?;
            Ok(SourceKind::File { uri: file_uri(&path) })
        }
    }
}

/// `url` with the password of any `user:password@` part replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The scheme of `s` when it starts with one (`[A-Za-z][A-Za-z0-9+.-]*:`).
fn uri_scheme(s: &str) -> Option<&str> {
    let end = s.find(':')?;
    let scheme = &s[..end];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))).then_some(scheme)
}

/// `file://` URI of an absolute path, percent-encoding every byte outside the unreserved set.
pub(crate) fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp_variants() {
        for url in ["rtsp://cam/1", "RTSP://cam/1", "rtsps://cam:322/x", "rtspt://cam/y"] {
            assert_eq!(classify(url), Ok(SourceKind::Rtsp { url: url.into() }), "{url}");
        }
    }

    #[test]
    fn devices_files_and_uris() {
        assert_eq!(
            classify("/dev/video0"),
            Ok(SourceKind::V4l2 {
                device: "/dev/video0".into()
            })
        );
        assert_eq!(
            classify("file:///a/b.mp4"),
            Ok(SourceKind::File {
                uri: "file:///a/b.mp4".into()
            })
        );
        assert_eq!(
            classify("/a/b c.mp4"),
            Ok(SourceKind::File {
                uri: "file:///a/b%20c.mp4".into()
            })
        );
        assert_eq!(
            classify("https://h/x.m3u8"),
            Ok(SourceKind::Uri {
                uri: "https://h/x.m3u8".into()
            })
        );
        assert_eq!(
            classify("srt://h:9000"),
            Ok(SourceKind::Uri {
                uri: "srt://h:9000".into()
            })
        );
        // A colon after a slash is part of a path, not a scheme.
        assert!(matches!(classify("clips/a:b.mp4"), Ok(SourceKind::File { uri }) if uri.ends_with("/clips/a%3Ab.mp4")));
    }

    #[test]
    fn relative_paths_become_absolute_file_uris() {
        let Ok(SourceKind::File { uri }) = classify("v.mp4") else {
            panic!()
        };
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(uri, file_uri(&cwd.join("v.mp4")));
    }

    #[test]
    fn passwords_are_masked_in_logs() {
        assert_eq!(
            redact_url("rtsp://admin:s3cret@cam:554/live"),
            "rtsp://admin:***@cam:554/live"
        );
        assert_eq!(redact_url("rtsp://cam/live"), "rtsp://cam/live");
        assert_eq!(redact_url("rtsp://user@cam/x@y"), "rtsp://user@cam/x@y");
        assert_eq!(redact_url("/videos/door.mp4"), "/videos/door.mp4");
    }

    #[test]
    fn malformed_urls_are_errors() {
        assert!(classify("").is_err());
        assert!(classify("   ").is_err());
        assert!(classify("rtsp:").is_err());
        assert!(classify("rtsp:cam").is_err());
    }

    #[test]
    fn pacing_by_kind() {
        assert!(SourceKind::Rtsp { url: String::new() }.is_paced(false));
        assert!(SourceKind::Uri { uri: String::new() }.is_paced(false));
        assert!(SourceKind::File { uri: String::new() }.is_paced(true));
        assert!(!SourceKind::File { uri: String::new() }.is_paced(false));
    }
}
