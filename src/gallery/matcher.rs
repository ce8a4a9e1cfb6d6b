//! Turning similarities into decisions: pure functions of scores, no models.
//!
//! Which threshold decides what (encodings compare by cosine, `vision::similarity`):
//! - **Door decisions** — 1:K `identify`, 1:1 `verify` and every decision of the daemon —
//!   use `gallery.threshold` (0.5) and `gallery.margin` (0.05) through [`decide`] and
//!   [`verified`]. They are strict because a false match opens a door for a stranger: two
//!   different people of the sample photos reach 0.374, and 0.464 in a blurred copy.
//! - **`compare`** of two photos, with no gallery, answers "same person?" with
//!   `recognition.threshold` (0.363, OpenCV's SFace threshold on LFW, where false matches
//!   and false non-matches are balanced) through [`same_person`].

use serde::Serialize;

/// What was decided about one face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchDecision {
    Match,
    Unknown,
    LowQuality,
}

/// A person's best template similarity to a probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub person_id: i64,
    pub name: String,
    pub similarity: f32,
}

/// 1:K rule: the best person matches when their similarity reaches `threshold` and beats
/// the runner-up person by at least `margin`; otherwise the face is unknown. `candidates`
/// are best first, one entry per person.
pub fn decide(candidates: &[Candidate], threshold: f32, margin: f32) -> MatchDecision {
    let Some(best) = candidates.first() else {
        return MatchDecision::Unknown;
    };
    let runner_up = candidates.get(1).map_or(f32::NEG_INFINITY, |c| c.similarity);
    if best.similarity >= threshold && best.similarity - runner_up >= margin {
        MatchDecision::Match
    } else {
        MatchDecision::Unknown
    }
}

/// Why [`decide`] finds a face unknown, for a person to read; `None` when it matches.
pub fn unknown_reason(candidates: &[Candidate], threshold: f32, margin: f32) -> Option<String> {
    if decide(candidates, threshold, margin) == MatchDecision::Match {
        return None;
    }
    let Some(best) = candidates.first() else {
        return Some("nobody is enrolled".into());
    };
    match candidates.get(1) {
        Some(second) if best.similarity >= threshold => Some(format!(
            "{} ({:.3}) is within the margin {margin:.2} of {} ({:.3})",
            best.name, best.similarity, second.name, second.similarity
        )),
        _ => Some(format!(
            "below the threshold: the most similar person, {}, scores {:.3} < {threshold:.3}",
            best.name, best.similarity
        )),
    }
}

/// 1:1 rule: the claimed person's best template similarity reaches `threshold`.
pub fn verified(similarity: f32, threshold: f32) -> bool {
    similarity >= threshold
}

/// Two photos, no gallery: the same person when their similarity reaches `threshold`
/// (`recognition.threshold`).
pub fn same_person(similarity: f32, threshold: f32) -> bool {
    similarity >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: i64, s: f32) -> Candidate {
        Candidate {
            person_id: id,
            name: format!("p{id}"),
            similarity: s,
        }
    }

    #[test]
    fn unknown_faces_say_why() {
        assert_eq!(unknown_reason(&[c(1, 0.6)], 0.4, 0.05), None);
        assert_eq!(unknown_reason(&[], 0.4, 0.05).as_deref(), Some("nobody is enrolled"));
        let low = unknown_reason(&[c(1, 0.3), c(2, 0.1)], 0.4, 0.05).unwrap();
        assert!(
            low.contains("below the threshold") && low.contains("p1") && low.contains("0.300"),
            "{low}"
        );
        let close = unknown_reason(&[c(1, 0.6), c(2, 0.58)], 0.4, 0.05).unwrap();
        assert!(close.contains("within the margin") && close.contains("p2"), "{close}");
    }

    #[test]
    fn rule_needs_threshold_and_margin() {
        assert_eq!(decide(&[], 0.4, 0.05), MatchDecision::Unknown);
        assert_eq!(decide(&[c(1, 0.6)], 0.4, 0.05), MatchDecision::Match);
        assert_eq!(decide(&[c(1, 0.39)], 0.4, 0.05), MatchDecision::Unknown);
        assert_eq!(decide(&[c(1, 0.6), c(2, 0.3)], 0.4, 0.05), MatchDecision::Match);
        // Two people nearly equally similar: ambiguous, so unknown.
        assert_eq!(decide(&[c(1, 0.6), c(2, 0.58)], 0.4, 0.05), MatchDecision::Unknown);
        assert_eq!(decide(&[c(1, 0.6), c(2, 0.55)], 0.4, 0.05), MatchDecision::Match);
    }
}
