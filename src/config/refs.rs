//! References an expression makes (`var.x`, `local.y`, `step.T.N[0].out`, `data.T.N`).
//!
//! Walks an `hcl-edit` expression with its visitor, skipping names bound by `for` expressions,
//! and records each reference with its span. References become dependency edges in `graph`.

use hcl_edit::expr::{Expression, ForExpr, Traversal, TraversalOperator};
use hcl_edit::visit::{self, Visit};
use hcl_edit::Span as _;

use super::Span;

/// The root name of a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefRoot {
    /// `var.NAME`.
    Var,
    /// `local.NAME`.
    Local,
    /// `step.TYPE.NAME`.
    Step,
    /// `data.TYPE.NAME`.
    Data,
    /// `count.index`.
    Count,
    /// `each.key` / `each.value`.
    Each,
    /// `path.module`, `path.cwd`.
    Path,
    /// A provider name in `provider = aws.west`, or any other unknown root.
    Other,
}

/// An instance key written right after a block reference: `step.t.n[0]` or `step.t.n["a"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    /// `[0]`.
    Int(u64),
    /// `["a"]`.
    Str(String),
}

/// One reference found in an expression.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The root kind.
    pub root: RefRoot,
    /// Root name followed by attribute names, up to the first non-attribute operator:
    /// `["step", "noop", "a", "out"]`.
    pub parts: Vec<String>,
    /// A literal index following the block name, if any.
    pub index: Option<IndexKey>,
    /// Where the reference is written.
    pub span: Span,
}

impl Reference {
    /// The referenced block address for `step`/`data` (`step.T.N`), `var.X`, `local.X`.
    pub fn subject(&self) -> String {
        if matches!(self.root, RefRoot::Step | RefRoot::Data) && self.parts.len() >= 3 {
            return super::modules::address(&self.parts[0], &self.parts[1], &self.parts[2]);
        }
        let n = match self.root {
            RefRoot::Step | RefRoot::Data => 3,
            _ => 2,
        };
        self.parts[..self.parts.len().min(n)].join(".")
    }

    /// The reference as written, up to its first non-attribute operator.
    pub fn text(&self) -> String {
        self.parts.join(".")
    }
}

struct Collector {
    file: usize,
    bound: Vec<String>,
    refs: Vec<Reference>,
    functions: Vec<(String, Span)>,
}

impl Collector {
    fn push(
        &mut self,
        root_name: &str,
        ops: &[&TraversalOperator],
        span: Option<std::ops::Range<usize>>,
    ) {
        if self.bound.iter().any(|b| b == root_name) {
            return;
        }
        let root = match root_name {
            "var" => RefRoot::Var,
            "local" => RefRoot::Local,
            "step" => RefRoot::Step,
            "data" => RefRoot::Data,
            "count" => RefRoot::Count,
            "each" => RefRoot::Each,
            "path" => RefRoot::Path,
            _ => RefRoot::Other,
        };
        let mut parts = vec![root_name.to_string()];
        let mut index = None;
        let block_len = match root {
            RefRoot::Step | RefRoot::Data => 3,
            _ => 2,
        };
        for op in ops {
            match op {
                TraversalOperator::GetAttr(ident) => parts.push(ident.as_str().to_string()),
                TraversalOperator::Index(expr) if parts.len() == block_len && index.is_none() => {
                    match expr {
                        Expression::Number(n) => {
                            index = n.value().as_u64().map(IndexKey::Int);
                        }
                        Expression::String(s) => index = Some(IndexKey::Str(s.value().to_string())),
                        _ => {}
                    }
                    break;
                }
                TraversalOperator::LegacyIndex(i) if parts.len() == block_len => {
                    index = Some(IndexKey::Int(*i.value()));
                    break;
                }
                _ => break,
            }
        }
        self.refs.push(Reference {
            root,
            parts,
            index,
            span: Span {
                file: self.file,
                range: span.unwrap_or(0..0),
            },
        });
    }
}

impl Visit for Collector {
    fn visit_traversal(&mut self, node: &Traversal) {
        if let Expression::Variable(var) = &node.expr {
            let ops: Vec<&TraversalOperator> = node.operators.iter().map(|o| o.value()).collect();
            self.push(var.as_str(), &ops, node.span());
            // Index expressions may themselves contain references.
            for op in &node.operators {
                if let TraversalOperator::Index(expr) = op.value() {
                    self.visit_expr(expr);
                }
            }
        } else {
            visit::visit_traversal(self, node);
        }
    }

    fn visit_expr(&mut self, node: &Expression) {
        match node {
            Expression::Variable(var) => self.push(var.as_str(), &[], var.span()),
            other => visit::visit_expr(self, other),
        }
    }

    fn visit_for_expr(&mut self, node: &ForExpr) {
        // The collection is evaluated outside the bound names.
        self.visit_expr(&node.intro.collection_expr);
        let n_before = self.bound.len();
        if let Some(key) = &node.intro.key_var {
            self.bound.push(key.as_str().to_string());
        }
        self.bound.push(node.intro.value_var.as_str().to_string());
        if let Some(key_expr) = &node.key_expr {
            self.visit_expr(key_expr);
        }
        self.visit_expr(&node.value_expr);
        if let Some(cond) = &node.cond {
            self.visit_expr(&cond.expr);
        }
        self.bound.truncate(n_before);
    }

    fn visit_func_call(&mut self, node: &hcl_edit::expr::FuncCall) {
        let name = node.name.name.as_str().to_string();
        self.functions.push((
            name,
            Span {
                file: self.file,
                range: node.name.name.span().unwrap_or(0..0),
            },
        ));
        visit::visit_func_call(self, node);
    }
}

/// Every reference in `expr`, and every function it calls (name and span).
pub fn collect(file: usize, expr: &Expression) -> (Vec<Reference>, Vec<(String, Span)>) {
    let mut c = Collector {
        file,
        bound: Vec::new(),
        refs: Vec::new(),
        functions: Vec::new(),
    };
    c.visit_expr(expr);
    (c.refs, c.functions)
}
