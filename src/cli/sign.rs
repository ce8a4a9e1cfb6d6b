//! `facegate sign`: a signed remote command on stdout, ready for
//! `mosquitto_pub -t facegate/cmd/enroll -s` (docs/remote-commands.md).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::error::Error;
use crate::events::{Command, CommandKey, sign_command};

#[derive(Debug, Args)]
pub struct SignArgs {
    /// File holding the shared key: the daemon's commands.key_file.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    #[command(subcommand)]
    pub command: SignCommand,
}

#[derive(Debug, Subcommand)]
pub enum SignCommand {
    /// Enroll a person from a photo (for {prefix}/cmd/enroll).
    Enroll {
        /// The person's unique name.
        #[arg(long)]
        name: String,
        /// The photo: JPEG, PNG, WebP or BMP.
        #[arg(long, value_name = "PHOTO")]
        image: PathBuf,
        /// Add to a person who is already enrolled.
        #[arg(long)]
        append: bool,
        /// Enroll the largest face of a photo that shows several.
        #[arg(long)]
        largest: bool,
        /// Enroll even when the face matches another enrolled person.
        #[arg(long)]
        force: bool,
        /// Free-form JSON object stored with the person (e.g. '{"badge": 1042}').
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        /// Echoed in the result on {prefix}/cmd/result.
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
    /// Remove a person (for {prefix}/cmd/remove).
    Remove {
        /// The person's name.
        #[arg(long)]
        name: String,
        /// Echoed in the result on {prefix}/cmd/result.
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
    },
}

/// Largest photo read: its signed command must fit in one message (16 MiB as base64).
const MAX_PHOTO_BYTES: u64 = 12 * 1024 * 1024;

/// Prints the signed envelope of the command, timestamped now.
pub fn sign(args: &SignArgs) -> Result<(), Error> {
    let key = CommandKey::from_file(&args.key_file).map_err(|reason| Error::Input {
        path: args.key_file.clone(),
        reason,
    })?;
    let command = match &args.command {
        SignCommand::Enroll {
            name,
            image,
            append,
            largest,
            force,
            metadata,
            request_id,
        } => Command::Enroll {
            request_id: request_id.clone(),
            name: name.clone(),
            image: read_photo(image)?,
            append: *append,
            largest: *largest,
            force: *force,
            metadata: metadata.as_deref().map(parse_metadata).transpose()?,
        },
        SignCommand::Remove { name, request_id } => Command::Remove {
            request_id: request_id.clone(),
            name: name.clone(),
        },
    };
    let now = chrono::Utc::now().timestamp();
    let envelope = sign_command(&key, &command, now).map_err(Error::Rejected)?;
    println!("{envelope}");
    Ok(())
}

fn read_photo(path: &Path) -> Result<Vec<u8>, Error> {
    let fail = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PHOTO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_PHOTO_BYTES {
        return Err(fail(format!(
            "larger than {} MiB: too large for one MQTT message; use a smaller photo",
            MAX_PHOTO_BYTES >> 20
        )));
    }
    Ok(bytes)
}

fn parse_metadata(text: &str) -> Result<serde_json::Value, Error> {
    match serde_json::from_str(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(Error::Rejected("--metadata must be a JSON object".into())),
        Err(e) => Err(Error::Rejected(format!("--metadata is not JSON: {e}"))),
    }
}
