//! Grouping by dictionary-encoded text through integer ids.
//!
//! The trace's repeated text columns (`module`, `function`, `run_id`, ...) are
//! dictionary-encoded, and DataFusion 55 has no group-by for dictionary keys: it
//! turns every row's text into its row format and hashes it (`new_group_values`
//! falls back to `GroupValuesRows`), which made `--top`, `--slow` and `--threads` the
//! slowest questions (about 1.5x DuckDB, which aggregates dictionaries directly).
//!
//! [`GroupByDictionaryIds`] is a logical optimizer rule that rewrites every
//! `GROUP BY` whose keys include such columns: each of them is grouped by
//! `tracer_text_id(column)`, a `UInt32` id per distinct text shared by the whole
//! session, and a projection above the aggregate turns the ids back into the same
//! dictionary-typed column under the same name. Per batch the id of a row is one
//! lookup in a table built once per dictionary (a row group of a Parquet file shares
//! one), so the engine groups plain integers. The answer is the same rows, with the
//! same schema, for the named questions and for `--sql` alike.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ahash::AHashMap;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, StringArray, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int32Type, UInt32Type};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{exec_err, Column, Result};
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, Projection, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// How many dictionaries' id tables are kept (a query reads a few row groups'
/// dictionaries per column at a time).
const RECENT_DICTIONARIES: usize = 64;

/// The texts seen by a session's queries, each with its id.
#[derive(Debug, Default)]
struct TextIds {
    state: Mutex<TextIdState>,
}

#[derive(Debug, Default)]
struct TextIdState {
    ids: AHashMap<Arc<str>, u32>,
    texts: Vec<Arc<str>>,
    /// The id of each value of recently seen dictionaries (`None` for a null value).
    /// Each entry holds its values array, so the buffers it is matched by cannot be
    /// freed and reused by another dictionary while it is kept.
    recent: VecDeque<(ArrayRef, Arc<[Option<u32>]>)>,
}

impl TextIdState {
    fn id_of(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).expect("fewer than 2^32 distinct texts");
        let text: Arc<str> = Arc::from(text);
        self.texts.push(text.clone());
        self.ids.insert(text, id);
        id
    }

    /// The id of every value of `values` (a dictionary's values).
    fn ids_of_values(&mut self, values: &ArrayRef) -> Result<Arc<[Option<u32>]>> {
        if let Some((_, ids)) = self
            .recent
            .iter()
            .find(|(seen, _)| Arc::ptr_eq(seen, values) || same_buffers(seen, values))
        {
            return Ok(ids.clone());
        }
        let Some(texts) = values.as_string_opt::<i32>() else {
            return exec_err!("tracer_text_id: dictionary values are not Utf8");
        };
        let ids: Arc<[Option<u32>]> = texts
            .iter()
            .map(|text| text.map(|t| self.id_of(t)))
            .collect();
        if self.recent.len() == RECENT_DICTIONARIES {
            self.recent.pop_front();
        }
        self.recent.push_back((values.clone(), ids.clone()));
        Ok(ids)
    }
}

/// Whether two arrays are views of the same memory (same buffers, offset, length).
fn same_buffers(a: &ArrayRef, b: &ArrayRef) -> bool {
    let (a, b) = (a.to_data(), b.to_data());
    a.len() == b.len()
        && a.offset() == b.offset()
        && a.buffers().len() == b.buffers().len()
        && a.buffers()
            .iter()
            .zip(b.buffers())
            .all(|(x, y)| x.as_ptr() == y.as_ptr() && x.len() == y.len())
        && a.nulls().map(|n| n.buffer().as_ptr()) == b.nulls().map(|n| n.buffer().as_ptr())
}

/// `tracer_text_id(dictionary text) -> UInt32`: the session-wide id of each row's text.
#[derive(Debug)]
struct TextIdFn {
    ids: Arc<TextIds>,
    signature: Signature,
}

/// `tracer_text_of(UInt32) -> Dictionary(Int32, Utf8)`: the text of each id.
#[derive(Debug)]
struct TextOfFn {
    ids: Arc<TextIds>,
    signature: Signature,
}

// The functions are equal when they share their ids (DataFusion compares functions
// to deduplicate expressions).
macro_rules! same_ids_eq_hash {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.ids, &other.ids)
            }
        }
        impl Eq for $t {}
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                Arc::as_ptr(&self.ids).hash(state);
            }
        }
    };
}
same_ids_eq_hash!(TextIdFn);
same_ids_eq_hash!(TextOfFn);

/// The one argument of a call of function `name`, as an array of the batch's rows.
fn single_argument(args: &ScalarFunctionArgs, name: &str) -> Result<ArrayRef> {
    let [column] = args.args.as_slice() else {
        return exec_err!("{name} takes one argument");
    };
    column.to_array(args.number_rows)
}

/// The return field of a grouping function: as nullable as its argument. The rule
/// puts the function in place of a column, and a plan's physical schema must keep
/// that column's nullability (a UNION ALL of two groupings of `function` failed on
/// it).
fn field_as_nullable_as_argument(
    name: &str,
    data_type: DataType,
    args: &ReturnFieldArgs,
) -> Result<FieldRef> {
    let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
    Ok(Arc::new(Field::new(name, data_type, nullable)))
}

fn dictionary_text() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

impl ScalarUDFImpl for TextIdFn {
    fn name(&self) -> &str {
        "tracer_text_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        field_as_nullable_as_argument(self.name(), self.return_type(&[])?, &args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let column = single_argument(&args, self.name())?;
        let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() else {
            return exec_err!("tracer_text_id: not a Dictionary(Int32, Utf8) column");
        };
        let value_ids = self
            .ids
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ids_of_values(dictionary.values())?;
        let ids: UInt32Array = dictionary
            .keys()
            .iter()
            .map(|key| key.and_then(|k| value_ids.get(usize::try_from(k).ok()?).copied()?))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(ids)))
    }
}

impl ScalarUDFImpl for TextOfFn {
    fn name(&self) -> &str {
        "tracer_text_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(dictionary_text())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        field_as_nullable_as_argument(self.name(), self.return_type(&[])?, &args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let column = single_argument(&args, self.name())?;
        let Some(ids) = column.as_primitive_opt::<UInt32Type>() else {
            return exec_err!("tracer_text_of: not a UInt32 column");
        };
        // A dictionary of just the texts this batch names (aggregated rows: few).
        let state = self
            .ids
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut local: AHashMap<u32, i32> = AHashMap::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut keys: Vec<Option<i32>> = Vec::with_capacity(ids.len());
        for id in ids.iter() {
            let Some(id) = id else {
                keys.push(None);
                continue;
            };
            let Some(text) = state.texts.get(id as usize) else {
                return exec_err!("tracer_text_of: unknown text id {id}");
            };
            let key = *local.entry(id).or_insert_with(|| {
                texts.push(text);
                i32::try_from(texts.len() - 1).unwrap_or(i32::MAX)
            });
            keys.push(Some(key));
        }
        let values: ArrayRef = Arc::new(StringArray::from(texts));
        let dictionary = DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), values)?;
        Ok(ColumnarValue::Array(Arc::new(dictionary)))
    }
}

/// The optimizer rule; see the module documentation.
#[derive(Debug)]
pub(crate) struct GroupByDictionaryIds {
    text_id: Arc<ScalarUDF>,
    text_of: Arc<ScalarUDF>,
}

impl GroupByDictionaryIds {
    pub(crate) fn new() -> GroupByDictionaryIds {
        let ids = Arc::new(TextIds::default());
        // Volatile: the ids depend on what the session saw first, so no rule may
        // fold, move or share these calls.
        let signature = || Signature::any(1, Volatility::Volatile);
        GroupByDictionaryIds {
            text_id: Arc::new(ScalarUDF::new_from_impl(TextIdFn {
                ids: ids.clone(),
                signature: signature(),
            })),
            text_of: Arc::new(ScalarUDF::new_from_impl(TextOfFn {
                ids,
                signature: signature(),
            })),
        }
    }
}

impl OptimizerRule for GroupByDictionaryIds {
    fn name(&self) -> &str {
        "tracer_group_by_dictionary_ids"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        let input_schema = aggregate.input.schema().clone();
        let is_dictionary_text = |expr: &Expr| match expr {
            Expr::Column(column) => input_schema
                .qualified_field_from_column(column)
                .is_ok_and(|(_, field)| *field.data_type() == dictionary_text()),
            _ => false,
        };
        let by_id: Vec<bool> = aggregate
            .group_expr
            .iter()
            .map(is_dictionary_text)
            .collect();
        if !by_id.contains(&true) {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }
        let group_expr: Vec<Expr> = aggregate
            .group_expr
            .iter()
            .zip(&by_id)
            .enumerate()
            .map(|(i, (expr, &by_id))| {
                if by_id {
                    self.text_id
                        .call(vec![expr.clone()])
                        .alias(format!("__tracer_text_id_{i}"))
                } else {
                    expr.clone()
                }
            })
            .collect();
        let original = aggregate.schema.clone();
        let by_ids = Aggregate::try_new(aggregate.input, group_expr, aggregate.aggr_expr)?;
        let by_ids_schema = by_ids.schema.clone();
        let columns: Vec<Expr> = by_ids_schema
            .iter()
            .zip(original.iter())
            .enumerate()
            .map(
                |(i, ((qualifier, field), (original_qualifier, original_field)))| {
                    let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                    if by_id.get(i).copied().unwrap_or(false) {
                        self.text_of
                            .call(vec![column])
                            .alias_qualified(original_qualifier.cloned(), original_field.name())
                    } else {
                        column
                    }
                },
            )
            .collect();
        let projection = Projection::try_new(columns, Arc::new(LogicalPlan::Aggregate(by_ids)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}
