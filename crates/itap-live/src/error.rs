//! The crate's error type.

use itap::telemetry::InvalidParam;

/// Everything that can go wrong in itap-live, outside of decoding a message (a
/// message a peer sent is never an error of the program: it is a
/// [`Reject`](crate::Reject)).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// A broker URL is not understood.
    #[error("cannot use MQTT broker URL `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },

    /// A device id cannot be a topic level, so its rows cannot be published.
    #[error(
        "device `{device}` cannot be published on an MQTT topic: {reason}; rename the device in the input"
    )]
    DeviceTopic {
        /// The device id (shortened when long).
        device: String,
        /// Why.
        reason: &'static str,
    },

    /// One encoded message is longer than the limit.
    #[error(
        "the message for device `{device}` at {ts} is {bytes} bytes, above the limit of {limit}; \
         raise `max_message_bytes` (and the server's payload limit) or use fewer signals"
    )]
    MessageTooLarge {
        /// The row's device.
        device: String,
        /// The row's timestamp, RFC 3339.
        ts: String,
        /// The message's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },

    /// The broker could not be reached, or refused the connection.
    #[error("cannot connect to the MQTT broker at {url}: {source}")]
    Connect {
        /// The broker URL.
        url: String,
        /// What the MQTT client said.
        #[source]
        source: Box<rumqttc::ConnectionError>,
    },

    /// The connection broke while messages were being published.
    #[error(
        "the connection to the MQTT broker at {url} broke after {acknowledged} of {total} messages \
         were acknowledged: {source}"
    )]
    Connection {
        /// The broker URL.
        url: String,
        /// Messages the broker acknowledged before the break.
        acknowledged: u64,
        /// Messages to publish in all.
        total: u64,
        /// What the MQTT client said.
        #[source]
        source: Box<rumqttc::ConnectionError>,
    },

    /// The store failed (the server stops; nothing uncommitted was acknowledged).
    #[error(transparent)]
    Store(#[from] itap::store::Error),

    /// The pipeline failed (scoring, the model).
    #[error(transparent)]
    Pipeline(#[from] itap::Error),

    /// The server cannot go on.
    #[error("itap serve: {0}")]
    Serve(String),

    /// The HTTP server stopped on an I/O error.
    #[error("itap serve --http stopped")]
    Http(#[source] std::io::Error),

    /// A batch run's files cannot be served.
    #[error("cannot serve the run in {}: {reason}", path.display())]
    Artifacts {
        /// The file (or folder) at fault.
        path: std::path::PathBuf,
        /// What is wrong and what to do.
        reason: String,
        /// The reader's error, when one is behind it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The MQTT client's request queue refused a request (its event loop ended).
    #[error("the MQTT client stopped taking requests: {0}")]
    Client(#[source] Box<rumqttc::ClientError>),
}

/// itap-live's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error with a refused parameter named inside `section`
    /// (`replay.rate`); other errors unchanged.
    #[must_use]
    pub fn in_section(self, section: &str) -> Self {
        match self {
            Error::InvalidParam(p) => Error::InvalidParam(p.prefixed(section)),
            other => other,
        }
    }

    pub(crate) fn client(e: rumqttc::ClientError) -> Self {
        Error::Client(Box::new(e))
    }

    pub(crate) fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParam(InvalidParam::new(name, reason))
    }
}
