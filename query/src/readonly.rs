//! The read-only gate for `--sql`: only one query over `events` and `runs` passes.
//!
//! Two layers. Before planning, the text is parsed with DataFusion's SQL parser and
//! must be exactly one `SELECT` / `WITH` query (or an `EXPLAIN` of one) whose tables
//! are `events`, `runs` or names its own `WITH` defines: table functions, quoted file
//! names, `SELECT ... INTO` and every other statement are refused. After planning,
//! the plan must contain no DDL, DML or statement node and scan only the two tables
//! (checked on the plan, so nothing the parser let through can reach a file).

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::catalog::cte_worktable::CteWorkTable;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{LogicalPlan, TableScan};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    ObjectName, ObjectNamePart, Query, Select, Statement, TableFactor, Visit, Visitor,
};

use crate::error::{QueryError, Result};

/// The tables a query may read.
pub const TABLES: [&str; 2] = ["events", "runs"];

/// The message every refusal carries, saying what is allowed.
const ALLOWED: &str =
    "--sql runs one read-only query (SELECT, WITH or EXPLAIN) over the tables events and runs";

/// Parses `sql` and returns its single statement if it is a read-only query over the
/// trace's tables; otherwise a [`QueryError::Refused`] saying why, or a
/// [`QueryError::Syntax`].
pub fn check_statement(sql: &str) -> Result<DfStatement> {
    let mut statements = DFParser::parse_sql(sql).map_err(|e| QueryError::Syntax {
        message: e.strip_backtrace(),
    })?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(statement), true) => statement,
        (None, _) => {
            return Err(refused("the text holds no statement"));
        }
        (Some(_), false) => {
            return Err(refused(
                "the text holds more than one statement; send one query",
            ));
        }
    };
    let query = read_only_query(&statement)?;
    check_relations(query)?;
    Ok(statement)
}

/// Checks a planned query: no DDL, DML or statement node, and every table scan reads
/// `events` or `runs`.
pub fn check_plan(plan: &LogicalPlan) -> Result<()> {
    let mut violation: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        let problem = match node {
            LogicalPlan::Ddl(ddl) => Some(format!("{} changes the catalog", ddl.name())),
            LogicalPlan::Dml(dml) => Some(format!("{} writes data", dml.op)),
            LogicalPlan::Copy(_) => Some("COPY writes files".to_string()),
            LogicalPlan::Statement(statement) => {
                Some(format!("{} is not a query", statement.name()))
            }
            LogicalPlan::TableScan(scan)
                if !TABLES.contains(&scan.table_name.table()) && !is_recursion_work_table(scan) =>
            {
                Some(format!(
                    "it reads {}, which is not one of the tables events and runs",
                    scan.table_name
                ))
            }
            _ => None,
        };
        Ok(match problem {
            Some(problem) => {
                violation = Some(problem);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    })
    .map_err(|e| QueryError::Engine(e.strip_backtrace()))?;
    match violation {
        Some(problem) => Err(refused(&problem)),
        None => Ok(()),
    }
}

/// Whether `scan` reads the rows a `WITH RECURSIVE` query has made so far (its work
/// table, named as the recursive `WITH`): memory of the query itself, not a table.
fn is_recursion_work_table(scan: &TableScan) -> bool {
    source_as_provider(&scan.source)
        .is_ok_and(|provider| (provider.as_ref() as &dyn std::any::Any).is::<CteWorkTable>())
}

fn refused(reason: &str) -> QueryError {
    QueryError::Refused {
        reason: format!("{reason}. {ALLOWED}"),
    }
}

/// The query inside an allowed statement (a query, or an EXPLAIN of one).
fn read_only_query(statement: &DfStatement) -> Result<&Query> {
    match statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            Statement::Query(query) => Ok(query),
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::Query(query) => Ok(query),
                other => Err(refused_statement(&other.to_string())),
            },
            other => Err(refused_statement(&other.to_string())),
        },
        DfStatement::Explain(explain) => read_only_query(&explain.statement),
        DfStatement::CopyTo(_) => Err(refused("this is a COPY statement, which writes files")),
        DfStatement::CreateExternalTable(_) => Err(refused(
            "this is a CREATE EXTERNAL TABLE statement, which reads other files",
        )),
        DfStatement::Reset(_) => Err(refused("this is a RESET statement, which changes options")),
    }
}

/// A refusal naming the statement's kind by its leading keywords.
fn refused_statement(text: &str) -> QueryError {
    let keywords: Vec<&str> = text.split_whitespace().take(2).collect();
    let kind = match keywords.as_slice() {
        [first, second]
            if matches!(
                first.to_ascii_uppercase().as_str(),
                "CREATE" | "DROP" | "ALTER" | "SHOW" | "INSERT" | "DELETE" | "TRUNCATE"
            ) && second.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            format!(
                "{} {}",
                first.to_ascii_uppercase(),
                second.to_ascii_uppercase()
            )
        }
        [first, ..] => first.to_ascii_uppercase(),
        [] => "empty".to_string(),
    };
    let article = if kind.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    refused(&format!("this is {article} {kind} statement, not a query"))
}

/// Refuses table functions, quoted file names and `SELECT ... INTO`: every relation
/// must be `events`, `runs` or a name defined by a `WITH` of the statement.
fn check_relations(query: &Query) -> Result<()> {
    let mut names = CteNames::default();
    let _ = query.visit(&mut names);
    let mut check = RelationCheck {
        ctes: names.names,
        problem: None,
    };
    let _ = query.visit(&mut check);
    match check.problem {
        Some(problem) => Err(refused(&problem)),
        None => Ok(()),
    }
}

/// Collects the names every `WITH` of a statement defines.
#[derive(Default)]
struct CteNames {
    names: HashSet<String>,
}

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.names.insert(normalized(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Finds the first relation that is neither a trace table nor a `WITH` name.
struct RelationCheck {
    ctes: HashSet<String>,
    problem: Option<String>,
}

impl RelationCheck {
    fn stop(&mut self, problem: String) -> ControlFlow<()> {
        self.problem = Some(problem);
        ControlFlow::Break(())
    }
}

impl Visitor for RelationCheck {
    type Break = ();

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            return self.stop("SELECT ... INTO creates a table".to_string());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => self.stop(format!("{name}(...) is a table function")),
            TableFactor::TableFunction { .. } | TableFactor::Function { .. } => {
                self.stop("table functions are not allowed".to_string())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let last = relation.0.last().and_then(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(ident),
            ObjectNamePart::Function(_) => None,
        });
        let allowed = last.is_some_and(|ident| {
            let name = normalized(ident);
            relation.0.len() == 1 && self.ctes.contains(&name) || TABLES.contains(&name.as_str())
        });
        if allowed {
            ControlFlow::Continue(())
        } else {
            self.stop(format!(
                "it reads {relation}, which is not one of the tables events and runs"
            ))
        }
    }
}

/// An identifier as DataFusion resolves it: unquoted ones are lower-cased.
fn normalized(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}
