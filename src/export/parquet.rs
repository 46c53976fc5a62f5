//! `record --format parquet`: the wide layout's columns as a typed Apache Parquet file.
//!
//! Rows are kept in memory until a row group of `row_group` rows is complete; the group is
//! then written, followed by a footer that describes every group so far. The next group is
//! written over that footer, and the final footer (with the run's final metadata) replaces the
//! last one when the run ends. So a recorder killed with SIGKILL leaves a valid file with every
//! completed row group, unless it dies in the milliseconds while a group is being written.
//! See docs/fleet.md (`## Parquet`).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::{Float64Builder, Int64Builder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::Compression;
use parquet::file::metadata::{
    FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::SchemaDescPtr;

use crate::record::Cell;
use crate::trace::{CellRow, ColumnInfo, Kind, Metadata, RowSink};

/// Key of the footer's key/value metadata that holds the recording's sidecar JSON.
pub const META_KEY: &str = "vmmon.meta";

/// Rows per row group when `--row-group` is not given: one minute of samples (at least 1,
/// at most 100 000), so a SIGKILL loses at most the last minute.
pub fn default_row_group(rate_hz: f64) -> usize {
    (60.0 * rate_hz).ceil().clamp(1.0, 100_000.0) as usize
}

/// The Arrow schema of a recording with these columns: `time` as a UTC timestamp in
/// microseconds, `elapsed` and every measured value as nullable `Float64`, cumulative
/// counters (`*_total`) as nullable `Int64`. Each field carries its kind and unit.
pub fn arrow_schema(columns: &[ColumnInfo]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let (ty, nullable) = match (c.name.as_str(), c.kind) {
                ("time", Kind::Time) => (
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                (_, Kind::Time) => (DataType::Float64, false),
                (_, Kind::Total) => (DataType::Int64, true),
                _ => (DataType::Float64, true),
            };
            let kind = serde_json::to_value(c.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            Field::new(c.name.clone(), ty, nullable).with_metadata(
                std::collections::BTreeMap::from([
                    ("kind".to_string(), kind),
                    ("unit".to_string(), c.unit.clone()),
                ]),
            )
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Writes at a shared end offset with positional writes, so that a footer can be put past
/// the end and later overwritten by the next row group.
struct Tail {
    file: Arc<File>,
    end: Arc<AtomicU64>,
}

impl Write for Tail {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = self.end.load(Ordering::Relaxed);
        self.file.write_all_at(buf, at)?;
        self.end.store(at + buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A column being filled for the current row group.
enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
}

impl Builder {
    fn push(&mut self, cell: Cell) {
        match (self, cell) {
            // A counter past 2^63 - 1 (centuries of nanoseconds) would not fit: null.
            (Builder::Int(b), Cell::Int(v)) => b.append_option(i64::try_from(v).ok()),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), Cell::Int(v)) => b.append_value(v as f64),
            (Builder::Float(b), Cell::Num(v)) => b.append_value(v),
            (Builder::Float(b), Cell::Empty) => b.append_null(),
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows to a Parquet file in row groups; see the module docs.
pub struct ParquetRows {
    writer: Option<ArrowWriter<Tail>>,
    file: Arc<File>,
    end: Arc<AtomicU64>,
    path: PathBuf,
    schema: SchemaRef,
    parquet_schema: SchemaDescPtr,
    version: i32,
    meta_json: String,
    time: TimestampMicrosecondBuilder,
    elapsed: Float64Builder,
    columns: Vec<Builder>,
    buffered: usize,
    row_group: usize,
    rows_flushed: u64,
}

impl std::fmt::Debug for ParquetRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetRows")
            .field("path", &self.path)
            .field("row_group", &self.row_group)
            .field("buffered", &self.buffered)
            .field("rows_flushed", &self.rows_flushed)
            .finish()
    }
}

/// An error of the Parquet writer as an I/O error naming the file and what is intact.
fn io_error(path: &Path, rows: u64, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!(
        "writing {}: {e}; the {rows} rows of the completed row groups are intact",
        path.display()
    ))
}

impl ParquetRows {
    /// Creates (truncates) `path` for rows with `columns` (`time` and `elapsed` first, as
    /// [`crate::record::Recorder::columns`] lists them), `row_group` rows per row group, and
    /// `meta` in the footer until the final metadata replaces it.
    pub fn create(
        path: &Path,
        columns: &[ColumnInfo],
        row_group: usize,
        meta: &Metadata,
    ) -> anyhow::Result<Self> {
        if columns.len() < 2 || columns[0].name != "time" || columns[1].name != "elapsed" {
            anyhow::bail!("a Parquet recording needs the columns time and elapsed first");
        }
        let schema = arrow_schema(columns);
        let file = File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create output file {}: {e}", path.display()))?;
        let file = Arc::new(file);
        let end = Arc::new(AtomicU64::new(0));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("vmmon version {}", env!("CARGO_PKG_VERSION")))
            // Row groups are cut by this sink, never by the writer.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None)
            .build();
        let version = props.writer_version().as_num();
        let parquet_schema = Arc::new(ArrowSchemaConverter::new().convert(&schema)?);
        let tail = Tail {
            file: Arc::clone(&file),
            end: Arc::clone(&end),
        };
        let writer = ArrowWriter::try_new(tail, Arc::clone(&schema), Some(props))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let builders = schema.fields()[2..]
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Builder::Int(Int64Builder::with_capacity(row_group)),
                _ => Builder::Float(Float64Builder::with_capacity(row_group)),
            })
            .collect();
        let mut sink = ParquetRows {
            writer: Some(writer),
            file,
            end,
            path: path.to_path_buf(),
            schema,
            parquet_schema,
            version,
            meta_json: serde_json::to_string(meta)?,
            time: TimestampMicrosecondBuilder::with_capacity(row_group).with_timezone("UTC"),
            elapsed: Float64Builder::with_capacity(row_group),
            columns: builders,
            buffered: 0,
            row_group: row_group.max(1),
            rows_flushed: 0,
        };
        // A file with no row group yet is already a valid, empty Parquet file.
        sink.write_footer()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(sink)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows in completed row groups (on disk under a valid footer).
    pub fn rows_flushed(&self) -> u64 {
        self.rows_flushed
    }

    /// Writes the buffered rows as one row group.
    fn flush_group(&mut self) -> io::Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.elapsed.finish()),
        ];
        arrays.extend(self.columns.iter_mut().map(Builder::finish));
        let rows = self.buffered;
        self.buffered = 0;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| io_error(&self.path, self.rows_flushed, e))?;
        let Some(writer) = self.writer.as_mut() else {
            return Err(io_error(
                &self.path,
                self.rows_flushed,
                "the file is closed",
            ));
        };
        writer
            .write(&batch)
            .and_then(|()| writer.flush())
            .map_err(|e| io_error(&self.path, self.rows_flushed, e))?;
        self.rows_flushed += rows as u64;
        self.write_footer()
    }

    /// Writes a footer describing every completed row group past the current end, and cuts
    /// the file there; the next row group overwrites it.
    fn write_footer(&mut self) -> io::Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        // The writer buffers its output: everything before the footer must be in the file.
        writer.sync()?;
        let groups: Vec<RowGroupMetaData> = writer.flushed_row_groups().to_vec();
        let rows = groups.iter().map(RowGroupMetaData::num_rows).sum();
        let kv = vec![KeyValue::new(META_KEY.to_string(), self.meta_json.clone())];
        let file_meta = FileMetaData::new(
            self.version,
            rows,
            Some(format!("vmmon version {}", env!("CARGO_PKG_VERSION"))),
            Some(kv),
            Arc::clone(&self.parquet_schema),
            None,
        );
        let meta = ParquetMetaData::new(file_meta, groups);
        let mut footer = Vec::new();
        ParquetMetaDataWriter::new(&mut footer, &meta)
            .finish()
            .map_err(|e| io_error(&self.path, self.rows_flushed, e))?;
        // The writer wrote the leading magic when it was created, so `end` is past it.
        let at = self.end.load(Ordering::Relaxed);
        self.file
            .write_all_at(&footer, at)
            .and_then(|()| self.file.set_len(at + footer.len() as u64))
            .map_err(|e| io_error(&self.path, self.rows_flushed, e))
    }

    /// Writes the last row group and the final footer with `meta` (or the metadata given at
    /// creation), and cuts the file after it. Later calls do nothing.
    pub fn close(&mut self, meta: Option<&Metadata>) -> io::Result<()> {
        let rows_before = self.rows_flushed;
        self.flush_group()?;
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let json = match meta {
            Some(m) => {
                serde_json::to_string(m).map_err(|e| io_error(&self.path, rows_before, e))?
            }
            None => self.meta_json.clone(),
        };
        writer.append_key_value_metadata(KeyValue::new(META_KEY.to_string(), json));
        writer
            .close()
            .map_err(|e| io_error(&self.path, self.rows_flushed, e))?;
        // The final footer may be shorter than the provisional one it replaced.
        let end = self.end.load(Ordering::Relaxed);
        self.file
            .set_len(end)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&self.path, self.rows_flushed, e))
    }
}

impl RowSink for ParquetRows {
    fn write_row(&mut self, _row: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a Parquet file takes typed rows",
        ))
    }

    fn typed(&self) -> bool {
        true
    }

    fn write_cells(&mut self, row: &CellRow<'_>) -> io::Result<()> {
        if self.writer.is_none() {
            return Err(io_error(
                &self.path,
                self.rows_flushed,
                "the file is closed",
            ));
        }
        self.time.append_value(row.wall.as_micros() as i64);
        // Rounded to microseconds, as the CSV's six decimals are.
        self.elapsed
            .append_value(row.elapsed.as_micros() as f64 / 1e6);
        let n = row.cells.len().min(self.columns.len());
        for (b, cell) in self.columns.iter_mut().zip(row.cells) {
            b.push(*cell);
        }
        // The columns after the schema's are --clock-ref's offset, rtt and bound.
        let clock = row.clock.map(|m| [m.offset, m.rtt, m.bound]);
        for (i, b) in self.columns[n..].iter_mut().enumerate() {
            match clock.and_then(|c| c.get(i).copied()) {
                Some(v) => b.push(Cell::Num(v)),
                None => b.null(),
            }
        }
        self.buffered += 1;
        if self.buffered >= self.row_group {
            self.flush_group()?;
        }
        Ok(())
    }

    fn finish(&mut self, meta: Option<&Metadata>) -> io::Result<()> {
        self.close(meta)
    }
}

impl Drop for ParquetRows {
    /// A library caller that never called `finish` still gets a valid file.
    fn drop(&mut self) {
        let _ = self.close(None);
    }
}
