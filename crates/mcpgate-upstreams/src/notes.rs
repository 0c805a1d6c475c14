//! The `notes` demo upstream: a real MCP server (official Rust SDK) that keeps
//! notes in memory, one notebook per process, seeded with a welcome note.
//!
//! Role: an *unprotected* upstream. The gateway in front of it is the
//! protected resource (RFC 9728) and enforces the scopes that the tool
//! descriptions name — see [`NOTES_TOOL_SCOPES`] — so `mcpgate serve --demo`
//! can show 401 → login → consent → calls → step-up to `notes:write`.
//!
//! Served over stdio by [`run_notes_stdio`] (`mcpgate demo-upstream`):
//! newline-delimited JSON-RPC on stdin/stdout, nothing else on stdout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The scope each notes tool needs, for the gateway's policy
/// (`[upstream.tools.NAME] scopes = [...]`) and for the demo config.
pub const NOTES_TOOL_SCOPES: &[(&str, &str)] = &[
    ("list_notes", "notes:read"),
    ("read_note", "notes:read"),
    ("add_note", "notes:write"),
    ("delete_note", "notes:admin"),
];

/// Longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most notes one notebook holds.
pub const MAX_NOTES: usize = 1000;

/// One note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// Stable id, never reused within a process.
    pub id: u64,
    /// Short title.
    pub title: String,
    /// Free text.
    pub body: String,
}

#[derive(Debug)]
struct Notebook {
    next_id: u64,
    notes: BTreeMap<u64, Note>,
}

impl Notebook {
    fn seeded() -> Self {
        let welcome = Note {
            id: 1,
            title: "Welcome".to_owned(),
            body: "This is the mcpgate demo notes service. Reading needs notes:read, \
                   adding needs notes:write, deleting needs notes:admin."
                .to_owned(),
        };
        Self {
            next_id: 2,
            notes: BTreeMap::from([(1, welcome)]),
        }
    }
}

/// Arguments of `read_note` and `delete_note`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NoteId {
    /// The note's id, as listed by `list_notes`.
    pub id: u64,
}

/// Arguments of `add_note`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewNote {
    /// Short title (1 to 200 characters).
    pub title: String,
    /// Free text (at most 16 KiB).
    pub body: String,
}

/// The notes MCP server. Clones share one notebook.
#[derive(Debug, Clone)]
pub struct NotesServer {
    book: Arc<Mutex<Notebook>>,
    tool_router: ToolRouter<Self>,
}

impl Default for NotesServer {
    fn default() -> Self {
        Self::new()
    }
}

fn text_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

#[tool_router]
impl NotesServer {
    /// A server with a fresh notebook holding only the welcome note.
    pub fn new() -> Self {
        Self {
            book: Arc::new(Mutex::new(Notebook::seeded())),
            tool_router: Self::tool_router(),
        }
    }

    /// A snapshot of the notes, by id.
    pub fn notes(&self) -> Vec<Note> {
        self.book().notes.values().cloned().collect()
    }

    fn book(&self) -> MutexGuard<'_, Notebook> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every mutation is a single insert or remove), so poison is ignored.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[tool(
        description = "List all notes (id and title). Requires scope notes:read.",
        annotations(title = "List notes", read_only_hint = true)
    )]
    fn list_notes(&self) -> CallToolResult {
        let notes: Vec<_> = self
            .book()
            .notes
            .values()
            .map(|n| json!({ "id": n.id, "title": n.title }))
            .collect();
        CallToolResult::structured(json!({ "notes": notes }))
    }

    #[tool(
        description = "Read one note by id (title and body). Requires scope notes:read.",
        annotations(title = "Read a note", read_only_hint = true)
    )]
    fn read_note(&self, Parameters(NoteId { id }): Parameters<NoteId>) -> CallToolResult {
        match self.book().notes.get(&id) {
            Some(note) => CallToolResult::structured(json!(note)),
            None => text_error(format!("no note with id {id}")),
        }
    }

    #[tool(
        description = "Add a note with a title and a body; returns the new note. \
                       Requires scope notes:write.",
        annotations(title = "Add a note", read_only_hint = false, destructive_hint = false)
    )]
    fn add_note(&self, Parameters(new): Parameters<NewNote>) -> CallToolResult {
        let title = new.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return text_error(format!("title must be 1 to {MAX_TITLE_CHARS} characters"));
        }
        if new.body.len() > MAX_BODY_BYTES {
            return text_error(format!("body must be at most {MAX_BODY_BYTES} bytes"));
        }
        let mut book = self.book();
        if book.notes.len() >= MAX_NOTES {
            return text_error(format!("the notebook is full ({MAX_NOTES} notes)"));
        }
        let id = book.next_id;
        book.next_id += 1;
        let note = Note {
            id,
            title: title.to_owned(),
            body: new.body,
        };
        book.notes.insert(id, note.clone());
        tracing::info!(id, "note added");
        CallToolResult::structured(json!(note))
    }

    #[tool(
        description = "Delete a note by id. Requires scope notes:admin.",
        annotations(
            title = "Delete a note",
            destructive_hint = true,
            idempotent_hint = true
        )
    )]
    fn delete_note(&self, Parameters(NoteId { id }): Parameters<NoteId>) -> CallToolResult {
        match self.book().notes.remove(&id) {
            Some(_) => {
                tracing::info!(id, "note deleted");
                CallToolResult::structured(json!({ "deleted": id }))
            }
            None => text_error(format!("no note with id {id}")),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("mcpgate-notes", env!("CARGO_PKG_VERSION"))
                    .with_title("mcpgate demo notes"),
            )
            .with_instructions(
                "A small notes service. list_notes and read_note need notes:read, \
                 add_note needs notes:write, delete_note needs notes:admin.",
            )
    }
}

/// Serve a fresh [`NotesServer`] over stdio until stdin closes.
///
/// stdout carries only newline-delimited JSON-RPC: the caller must send logs
/// to stderr (this function installs no tracing subscriber; one that writes to
/// stdout would corrupt the channel).
pub async fn run_notes_stdio() -> anyhow::Result<()> {
    tracing::info!("notes upstream serving on stdio");
    let running = NotesServer::new().serve(rmcp::transport::stdio()).await?;
    let reason = running.waiting().await?;
    tracing::info!(?reason, "notes upstream stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_with_welcome_note_and_ids_are_not_reused() {
        let server = NotesServer::new();
        assert_eq!(server.notes().len(), 1);
        assert_eq!(server.notes()[0].title, "Welcome");
        let added = server.add_note(Parameters(NewNote {
            title: "a".into(),
            body: "b".into(),
        }));
        assert_eq!(added.is_error, Some(false));
        let _ = server.delete_note(Parameters(NoteId { id: 2 }));
        let again = server.add_note(Parameters(NewNote {
            title: "c".into(),
            body: String::new(),
        }));
        assert_eq!(again.structured_content.unwrap()["id"], 3);
    }

    #[test]
    fn rejects_bad_input() {
        let server = NotesServer::new();
        let empty = server.add_note(Parameters(NewNote {
            title: "  ".into(),
            body: String::new(),
        }));
        assert_eq!(empty.is_error, Some(true));
        let big = server.add_note(Parameters(NewNote {
            title: "t".into(),
            body: "x".repeat(MAX_BODY_BYTES + 1),
        }));
        assert_eq!(big.is_error, Some(true));
        assert_eq!(
            server.read_note(Parameters(NoteId { id: 99 })).is_error,
            Some(true)
        );
    }

    #[test]
    fn every_tool_has_a_scope_and_names_it() {
        let tools = NotesServer::new().tool_router.list_all();
        assert_eq!(tools.len(), NOTES_TOOL_SCOPES.len());
        for (name, scope) in NOTES_TOOL_SCOPES {
            let tool = tools.iter().find(|t| t.name == *name).expect(name);
            assert!(tool.description.as_deref().unwrap().contains(scope));
        }
    }
}
