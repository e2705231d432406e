//! Events read from standard input by `append`: lines, all of it, JSON Lines (evstream's
//! own records or any objects with a named time field), CSV with a named time field, or
//! the stream's binary event framing.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use serde_json::value::RawValue;

use crate::failure::{Failure, os_reason};
use crate::time::{self, Zone};
use crate::units;

/// How `append` reads standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One event per line, its newline removed.
    Lines,
    /// All of standard input as one event.
    Raw,
    /// One JSON object a line. Without --time-field: the records `cat --format jsonl`
    /// prints (`timestamp` as a decimal string or integer, or `time`; `payload` or
    /// `payload_base64`), copied exactly. With --time-field: any objects, the line itself
    /// as the payload (or --payload-field), the time from the named field.
    Jsonl,
    /// CSV with a header row; needs --time-field. The payload is the row as a JSON object
    /// of the header's names, or the --payload-field column.
    Csv,
    /// The stream's binary event framing, as `cat --format binary` writes it.
    Binary,
}

/// The unit of numeric times in imported records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeUnit {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

impl TimeUnit {
    fn nanos(self) -> i64 {
        match self {
            Self::S => 1_000_000_000,
            Self::Ms => 1_000_000,
            Self::Us => 1_000,
            Self::Ns => 1,
        }
    }
}

/// Which fields of imported records hold the time and the payload.
#[derive(Debug, Clone)]
pub struct Fields {
    /// The field with the event's time.
    pub time: Option<String>,
    /// The field with the payload (default: the whole record).
    pub payload: Option<String>,
    /// The unit of numeric times.
    pub unit: Option<TimeUnit>,
    /// The zone for dates without an offset.
    pub zone: Zone,
    /// The clock for relative times, read once.
    pub now: i64,
}

/// One record of input: an optional timestamp of its own, and the payload in a buffer.
pub type Record = Option<i64>;

/// The line number (1-based) of the `n`-th record, for messages.
fn at_record(n: u64) -> String {
    format!("standard input record {n}")
}

/// The most a record may hold, set by the target before each record is read.
pub struct Limit<'a> {
    /// The largest payload the target can take now (a stream's free space less an event
    /// header, a log's largest event less its header).
    pub payload: u64,
    /// The target's own error for a payload of this many bytes, which it cannot take (the
    /// error an argument that long gets).
    pub too_large: &'a dyn Fn(u64) -> Failure,
}

/// A record is read whole when it is at most this long even where the target has less
/// room, so that the message for it names its exact size.
const SMALL_RECORD: u64 = 64 << 10;

/// A JSON Lines or CSV record may be this many times longer than the payload it makes:
/// JSON writes a control character as six bytes (`\u0001`).
const TEXT_FACTOR: u64 = 6;

/// Bytes the CSV reader reads ahead of the record it returns.
const CSV_BUFFER: u64 = 8 << 10;

/// How far standard input may be read: bytes consumed so far, and the most that may be
/// consumed before the record being read must have ended.
#[derive(Default)]
struct Budget {
    read: Cell<u64>,
    limit: Cell<u64>,
}

/// Reading stopped at the [`Budget`]'s limit with input left: the record is too long.
#[derive(Debug)]
struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the record is longer than the most that is read of one")
    }
}

impl std::error::Error for TooLong {}

/// Whether `error` is the [`TooLong`] of a [`Bounded`] input.
fn is_too_long(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<TooLong>())
}

/// Standard input, read no further than its [`Budget`] allows: memory stays bounded by
/// the record limit, whatever the input (`/dev/zero` has no newline).
struct Bounded {
    inner: Box<dyn BufRead>,
    budget: Rc<Budget>,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), available.get(..n)) {
            to.copy_from_slice(from);
        }
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Bounded {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let left = self
            .budget
            .limit
            .get()
            .saturating_sub(self.budget.read.get());
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            return Ok(buf);
        }
        if left == 0 {
            return Err(io::Error::other(TooLong));
        }
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        Ok(buf.get(..n).unwrap_or_default())
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        self.budget
            .read
            .set(self.budget.read.get().saturating_add(amount as u64));
    }
}

/// A reader of records from standard input.
pub struct Reader {
    format: InputFormat,
    fields: Fields,
    input: Box<dyn BufRead>,
    budget: Rc<Budget>,
    csv: Option<CsvState>,
    line: Vec<u8>,
    done: bool,
    /// Records read so far.
    pub records: u64,
    /// Bytes of input consumed so far.
    pub consumed: u64,
}

struct CsvState {
    reader: csv::Reader<Box<dyn BufRead>>,
    headers: Vec<String>,
    time: usize,
    payload: Option<usize>,
    record: csv::StringRecord,
}

impl Reader {
    /// A reader of `format` records from `input`.
    ///
    /// # Errors
    /// A usage failure when the fields do not suit the format; a data failure for a CSV
    /// header that cannot be read or lacks a named field.
    pub fn new(
        format: InputFormat,
        fields: Fields,
        input: Box<dyn BufRead>,
    ) -> Result<Self, Failure> {
        let import = matches!(format, InputFormat::Jsonl | InputFormat::Csv);
        if fields.time.is_some() && !import {
            return Err(Failure::usage("--time-field is for --format jsonl or csv"));
        }
        if (fields.payload.is_some() || fields.unit.is_some()) && fields.time.is_none() {
            return Err(Failure::usage(
                "--payload-field and --time-unit go with --time-field (an import)",
            ));
        }
        if format == InputFormat::Csv && fields.time.is_none() {
            return Err(Failure::usage(
                "--format csv needs --time-field NAME, the column with each event's time",
            ));
        }
        let budget = Rc::new(Budget::default());
        let input = Box::new(Bounded {
            inner: input,
            budget: Rc::clone(&budget),
        });
        Ok(Self {
            format,
            fields,
            input,
            budget,
            csv: None,
            line: Vec::with_capacity(4096),
            done: false,
            records: 0,
            consumed: 0,
        })
    }

    /// Reads the CSV header (once, before the first record), within `bound` bytes.
    fn csv_header(&mut self, bound: u64) -> Result<(), Failure> {
        let time_name = self.fields.time.clone().unwrap_or_default();
        self.budget.limit.set(bound.saturating_add(CSV_BUFFER));
        let input = std::mem::replace(&mut self.input, Box::new(io::empty()));
        let mut csv = csv::ReaderBuilder::new()
            .flexible(false)
            .buffer_capacity(CSV_BUFFER as usize)
            .from_reader(input);
        let headers: Vec<String> = match csv.headers() {
            Ok(headers) => headers.iter().map(str::to_owned).collect(),
            Err(e) if csv_too_long(&e) => {
                return Err(Failure::data(format!(
                    "standard input: the CSV header goes on past {} without ending, longer \
                     than any record append reads; standard input was read no further",
                    units::size_exact(bound)
                )));
            }
            Err(e) => {
                return Err(Failure::data(format!(
                    "standard input: cannot read the CSV header: {e}"
                )));
            }
        };
        let find = |name: &str| {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                Failure::data(format!(
                    "standard input: the CSV header has no column {name:?} (it has {})",
                    headers.join(", ")
                ))
            })
        };
        // A name given twice: the row's JSON object would keep one of the values and drop
        // the other, and a time or payload column would be a guess.
        let named = |name: &str| headers.iter().filter(|h| *h == name).count();
        let repeated = headers.iter().find(|name| {
            named(name) > 1
                && match self.fields.payload.as_deref() {
                    None => true,
                    Some(payload) => *name == &time_name || *name == payload,
                }
        });
        if let Some(name) = repeated {
            return Err(Failure::data(format!(
                "standard input: the CSV header names the column {name:?} {} times; each \
                 column needs a name of its own",
                named(name)
            )));
        }
        let time = find(&time_name)?;
        let payload = self.fields.payload.as_deref().map(find).transpose()?;
        // The first record gets a limit of its own, from the header's end.
        let start = csv.position().byte();
        self.budget
            .limit
            .set(start.saturating_add(bound).saturating_add(CSV_BUFFER));
        self.csv = Some(CsvState {
            reader: csv,
            headers,
            time,
            payload,
            record: csv::StringRecord::new(),
        });
        Ok(())
    }

    /// Reads the next record's payload into `payload`; `Ok(None)` at the end, else
    /// `Ok(Some(time))` with the record's own time, if it has one.
    ///
    /// # Errors
    /// A data failure naming the record.
    pub fn next(
        &mut self,
        payload: &mut Vec<u8>,
        limit: &Limit<'_>,
    ) -> Result<Option<Record>, Failure> {
        payload.clear();
        if self.done {
            return Ok(None);
        }
        let record = self.records + 1;
        // A record whose payload is the input's bytes (a line, all of it, a frame, a JSON
        // line imported whole) is read up to the largest payload; one that is text to
        // decode (JSON Lines, CSV) up to a multiple of it.
        let bound = limit.payload.max(SMALL_RECORD);
        let text_bound = bound.saturating_mul(TEXT_FACTOR);
        let whole_line = self.fields.time.is_some() && self.fields.payload.is_none();
        let (allowed, exact) = match self.format {
            InputFormat::Raw => (bound, true),
            InputFormat::Lines => (bound.saturating_add(1), true),
            InputFormat::Binary => (bound.saturating_add(16), true),
            InputFormat::Jsonl if whole_line => (bound.saturating_add(1), true),
            InputFormat::Jsonl => (text_bound.saturating_add(1), false),
            InputFormat::Csv => (text_bound.saturating_add(CSV_BUFFER), false),
        };
        let start = match &self.csv {
            // The CSV reader reads ahead: count from the end of the record before.
            Some(csv) => csv.reader.position().byte(),
            None => self.budget.read.get(),
        };
        self.budget.limit.set(start.saturating_add(allowed));
        match self.read_record(payload, text_bound) {
            Ok(Some(timestamp)) => {
                self.records = record;
                Ok(Some(timestamp))
            }
            Ok(None) => Ok(None),
            Err(Stop::Failure(failure)) => Err(failure),
            Err(Stop::TooLong) => {
                // Nothing of the record is appended, and nothing after it is read.
                payload.clear();
                self.done = true;
                Err(if exact {
                    (limit.too_large)(bound.saturating_add(1)).with_context(&format!(
                        " ({} is longer than {bound} bytes; standard input was read no further)",
                        at_record(record),
                    ))
                } else {
                    Failure::data(format!(
                        "{} goes on past {} without ending, the most a JSON Lines or CSV \
                         record is read for a target whose largest payload is {} bytes; \
                         standard input was read no further",
                        at_record(record),
                        units::size_exact(text_bound),
                        limit.payload
                    ))
                })
            }
        }
    }

    /// Reads one record, as [`next`](Self::next) describes.
    fn read_record(
        &mut self,
        payload: &mut Vec<u8>,
        text_bound: u64,
    ) -> Result<Option<Record>, Stop> {
        let record = self.records + 1;
        let result = match self.format {
            InputFormat::Raw => {
                self.done = true;
                let read = self.input.read_to_end(payload).map_err(Stop::stdin)?;
                self.consumed += read as u64;
                Ok(Some(None))
            }
            InputFormat::Lines => {
                if !self.read_line()? {
                    return Ok(None);
                }
                payload.extend_from_slice(&self.line);
                Ok(Some(None))
            }
            InputFormat::Binary => match evstream::stdio::read_event(&mut self.input, payload) {
                Ok(None) => return Ok(None),
                Ok(Some(timestamp)) => {
                    self.consumed += 16 + payload.len() as u64;
                    Ok(Some(Some(timestamp)))
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(format!(
                    "the input ends inside an event frame (after {} complete events)",
                    self.records
                )),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(format!(
                    "not an evstream event frame: {} (is the input `evstream cat --format binary`?)",
                    evstream::stdio::CodecError::from_io(&e)
                        .map_or_else(|| e.to_string(), ToString::to_string)
                )),
                Err(e) => return Err(Stop::stdin(e)),
            },
            InputFormat::Jsonl => {
                if !self.read_line()? {
                    return Ok(None);
                }
                if self.fields.time.is_some() {
                    import_json(&self.line, &self.fields, payload).map(Some)
                } else {
                    exact_json(&self.line, &self.fields, payload).map(Some)
                }
            }
            InputFormat::Csv => {
                if self.csv.is_none() {
                    self.csv_header(text_bound).map_err(Stop::Failure)?;
                }
                self.next_csv(payload)?
            }
        };
        result.map_err(|why| Stop::Failure(Failure::data(format!("{}: {why}", at_record(record)))))
    }

    /// Reads one line without its newline into `self.line`; false at the end.
    fn read_line(&mut self) -> Result<bool, Stop> {
        self.line.clear();
        let read = self
            .input
            .read_until(b'\n', &mut self.line)
            .map_err(Stop::stdin)?;
        self.consumed += read as u64;
        if read == 0 {
            return Ok(false);
        }
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        }
        Ok(true)
    }

    /// The next CSV record; the outer error stops reading, the inner one names the
    /// record.
    fn next_csv(&mut self, payload: &mut Vec<u8>) -> Result<Result<Option<Record>, String>, Stop> {
        let Some(csv) = self.csv.as_mut() else {
            return Ok(Ok(None));
        };
        match csv.reader.read_record(&mut csv.record) {
            Ok(false) => return Ok(Ok(None)),
            Ok(true) => {}
            Err(e) if csv_too_long(&e) => return Err(Stop::TooLong),
            Err(e) => return Ok(Err(format!("not valid CSV: {e}"))),
        }
        Ok(self.csv_record(payload))
    }

    /// The CSV record just read: its time, and its payload into `payload`.
    fn csv_record(&mut self, payload: &mut Vec<u8>) -> Result<Option<Record>, String> {
        let Some(csv) = self.csv.as_mut() else {
            return Ok(None);
        };
        self.consumed = csv.reader.position().byte();
        let time_text = csv.record.get(csv.time).unwrap_or_default();
        let timestamp = field_time(time_text, &self.fields)?;
        match csv.payload {
            Some(column) => {
                payload.extend_from_slice(csv.record.get(column).unwrap_or_default().as_bytes())
            }
            None => {
                let object: serde_json::Map<String, serde_json::Value> = csv
                    .headers
                    .iter()
                    .zip(csv.record.iter())
                    .map(|(name, value)| {
                        (name.clone(), serde_json::Value::String(value.to_owned()))
                    })
                    .collect();
                serde_json::to_writer(&mut *payload, &object).map_err(|e| e.to_string())?;
            }
        }
        Ok(Some(Some(timestamp)))
    }
}

/// A failure reading standard input.
pub fn stdin_failure(error: io::Error) -> Failure {
    Failure::data(format!("cannot read standard input: {}", os_reason(&error)))
}

/// Why reading a record stopped.
enum Stop {
    /// The record is longer than the limit: reading stopped there.
    TooLong,
    /// Any other failure, reading or decoding.
    Failure(Failure),
}

impl Stop {
    /// A failure reading standard input, or the limit reached.
    fn stdin(error: io::Error) -> Self {
        if is_too_long(&error) {
            Self::TooLong
        } else {
            Self::Failure(stdin_failure(error))
        }
    }
}

/// Whether the CSV reader stopped at the [`Bounded`] input's limit.
fn csv_too_long(error: &csv::Error) -> bool {
    matches!(error.kind(), csv::ErrorKind::Io(e) if is_too_long(e))
}

/// One line of JSON, an object: each field's value as written, parsed when asked for,
/// so that a number keeps its own digits (parsed, a fraction would be rounded to the
/// nearest `f64`: `1714564800.123456789` to `1714564800.1234567`).
struct Object<'a> {
    fields: HashMap<String, &'a RawValue>,
}

impl<'a> Object<'a> {
    /// Parses `line`, which must be a JSON object (a name given twice: the last one).
    fn parse(line: &'a [u8]) -> Result<Self, String> {
        match serde_json::from_slice::<HashMap<String, &RawValue>>(line) {
            Ok(fields) => Ok(Self { fields }),
            // Valid JSON that is not an object, or not valid JSON at all.
            Err(e) => match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(_) => Err("expected a JSON object".into()),
                Err(_) => Err(format!("not valid JSON: {e}")),
            },
        }
    }

    /// The text of field `name`'s value as written.
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.fields.get(name).map(|raw| raw.get())
    }

    /// Field `name`'s value, `None` if the object has no such field.
    ///
    /// # Errors
    /// A value the object's parse let through but that holds no JSON value, such as a
    /// string with a lone surrogate escape (`"\ud800"`, no Unicode text): the record is
    /// refused, never read as if the field were missing.
    fn get(&self, name: &str) -> Result<Option<serde_json::Value>, String> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        serde_json::from_str(raw)
            .map(Some)
            .map_err(|e| format!("{name:?} is not valid JSON: {e}"))
    }
}

/// An evstream record (`cat --format jsonl`): its timestamp, and its payload into `payload`.
fn exact_json(line: &[u8], fields: &Fields, payload: &mut Vec<u8>) -> Result<Record, String> {
    let record = Object::parse(line)?;
    let timestamp = match (record.get("timestamp")?, record.get("time")?) {
        (Some(serde_json::Value::String(digits)), _) => Some(
            digits
                .parse::<i64>()
                .map_err(|_| format!("\"timestamp\" {digits:?} is not Unix nanoseconds"))?,
        ),
        (Some(serde_json::Value::Number(n)), _) => Some(n.as_i64().ok_or_else(|| {
            format!("\"timestamp\" {n} is not a whole number of Unix nanoseconds")
        })?),
        (Some(other), _) => return Err(format!("\"timestamp\" {other} is not Unix nanoseconds")),
        (None, Some(_)) => Some(json_time(&record, "time", fields)?),
        (None, None) => None,
    };
    match (record.get("payload")?, record.get("payload_base64")?) {
        (Some(serde_json::Value::String(text)), None) => payload.extend_from_slice(text.as_bytes()),
        (None, Some(serde_json::Value::String(encoded))) => {
            crate::encode::base64_decode(payload, encoded.as_bytes())
                .map_err(|why| format!("\"payload_base64\" is not base64: {why}"))?;
        }
        (Some(_), Some(_)) => return Err("both \"payload\" and \"payload_base64\"".into()),
        (None, None) => {
            return Err(
                "no \"payload\" or \"payload_base64\" (to import other JSON, name its time field with --time-field)"
                    .into(),
            );
        }
        _ => return Err("\"payload\" and \"payload_base64\" must be strings".into()),
    }
    if let Some(size) = record.get("size")?
        && size.as_u64() != Some(payload.len() as u64)
    {
        return Err(format!(
            "\"size\" {size} does not match the payload's {} bytes",
            payload.len()
        ));
    }
    Ok(timestamp)
}

/// Any JSON object with a time field: the time, and the payload (the line, or a field).
fn import_json(line: &[u8], fields: &Fields, payload: &mut Vec<u8>) -> Result<Record, String> {
    let record = Object::parse(line)?;
    let name = fields.time.as_deref().unwrap_or_default();
    let timestamp = json_time(&record, name, fields)?;
    match fields.payload.as_deref() {
        None => payload.extend_from_slice(line),
        Some(field) => match record.get(field)? {
            Some(serde_json::Value::String(text)) => payload.extend_from_slice(text.as_bytes()),
            // A number as written, every digit kept.
            Some(serde_json::Value::Number(_)) => {
                payload.extend_from_slice(record.raw(field).unwrap_or_default().as_bytes())
            }
            Some(other) => {
                serde_json::to_writer(&mut *payload, &other).map_err(|e| e.to_string())?
            }
            None => return Err(format!("no field {field:?}")),
        },
    }
    Ok(Some(timestamp))
}

/// Whether `text` is a number as JSON writes one: `-`, digits, a fraction, an exponent.
fn is_number(text: &str) -> bool {
    let text = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (text.get(..at).unwrap_or_default(), text.get(at + 1..)),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| digits(e.trim_start_matches(['+', '-'])));
    digits(whole) && digits(fraction) && exponent_ok
}

/// The time in field `name` of a JSON record: a TIME string, or a number in
/// --time-unit, read from its own digits.
fn json_time(record: &Object<'_>, name: &str, fields: &Fields) -> Result<i64, String> {
    match record.get(name)? {
        None => Err(format!("no field {name:?}")),
        Some(serde_json::Value::String(text)) => field_time(&text, fields),
        Some(serde_json::Value::Number(_)) => {
            let digits = record.raw(name).unwrap_or_default();
            if fields.unit.is_none() && fields.time.is_none() {
                // An evstream record's "time" (no --time-field): --time-unit does not
                // apply, an import does.
                return Err(format!(
                    "the \"{name}\" {digits} is a bare number; write \"timestamp\" in Unix \
                     nanoseconds, or import the records with --time-field {name} \
                     --time-unit s|ms|us|ns"
                ));
            }
            number_time(&plain_decimal(digits), fields)
        }
        Some(other) => Err(format!("the time {other} is not a string or a number")),
    }
}

/// The time in a record's text field (a JSON string, a CSV column): a TIME, or a
/// number in --time-unit.
fn field_time(text: &str, fields: &Fields) -> Result<i64, String> {
    let text = text.trim();
    if is_number(text) {
        if text.contains(['e', 'E']) {
            return Err(format!("the time {text} is in exponent form; write it out"));
        }
        return number_time(text, fields);
    }
    time::parse_time(text)?.resolve(&fields.zone, fields.now)
}

/// A number of --time-unit since the Unix epoch, written out (digits, a fraction), to
/// the nanosecond: fraction digits finer than that are dropped.
fn number_time(text: &str, fields: &Fields) -> Result<i64, String> {
    let Some(unit) = fields.unit else {
        return Err(format!(
            "the time {text} is a bare number; give its unit with --time-unit s|ms|us|ns"
        ));
    };
    time::unix(text, unit.nanos())
}

/// A JSON number written out without an exponent, exactly (`1.5e3` is `1500`,
/// `-25e-1` is `-2.5`).
fn plain_decimal(number: &str) -> String {
    let Some(at) = number.find(['e', 'E']) else {
        return number.to_owned();
    };
    let (mantissa, exponent) = (number.get(..at).unwrap_or_default(), number.get(at + 1..));
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    // Past ±400 digits a time is out of range, or finer than a nanosecond in every unit.
    let exponent: i64 = exponent
        .unwrap_or_default()
        .parse::<i64>()
        .unwrap_or(i64::MAX)
        .clamp(-400, 400);
    // Where the decimal point goes in `digits`, counted from their start.
    let point = whole.len() as i64 + exponent;
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_told_from_dates_and_times() {
        for number in [
            "0",
            "-5",
            "1714564800",
            "1714564800.25",
            "1e9",
            "1.5E+3",
            "-2e-1",
        ] {
            assert!(is_number(number), "{number}");
        }
        for text in [
            "",
            "-",
            ".5",
            "5.",
            "2024-05-01",
            "1714564800s",
            "@1714564800",
            "1e",
            "e5",
            "now",
        ] {
            assert!(!is_number(text), "{text}");
        }
    }
}
