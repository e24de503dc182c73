// infiller for VS Code: a thin client. It starts `infiller serve`, forwards the `infiller` settings
// and adds a statistics command; completions (LSP 3.18 inline completion, which
// vscode-languageclient >= 10 registers by default), code actions, progress and cancellation all
// come from the language client and the server. No retrieval or caching here.
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
} from "vscode-languageclient/node";

const SECTION = "infiller";
// The server shows the words it has finished when the user pauses, and sends this notification
// when the rest of that suggestion is ready; we then ask for inline completions again.
const SUGGESTION_UPDATED = "infiller/suggestionUpdated";
const SUGGESTION_UPDATES = "infillerSuggestionUpdates";
// Where the cursor is (textDocument + position): the server reads the prompt for that line while
// the user looks, once the cursor rests and the keyboard is quiet (it decides both).
const CURSOR = "infiller/cursor";
// Keys under `infiller` that only this extension reads (see clients/gen_schema.py, VSCODE_ONLY).
const CLIENT_ONLY_KEYS = ["server", "trace"];

let client: LanguageClient | undefined;
// Where the last non-empty inline suggestion was shown (a suggestionUpdated there asks again).
let lastShown: { uri: string; version: number; position: vscode.Position } | undefined;

/** The `infiller` section as the server reads it: VS Code nests `infiller.a.b` keys for us. */
function serverSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const settings: Record<string, unknown> = JSON.parse(JSON.stringify(config));
  for (const key of CLIENT_ONLY_KEYS) {
    delete settings[key];
  }
  return settings;
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  const exts = process.platform === "win32" ? [".exe", ".cmd", ""] : [""];
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      if (dir && executable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

/** `infiller.server.path`, else `infiller` on PATH, else the first workspace folder's .venv. */
function serverPath(): string | undefined {
  const configured = vscode.workspace.getConfiguration(SECTION).get<string>("server.path", "");
  if (configured) {
    return configured;
  }
  const found = onPath("infiller");
  if (found) {
    return found;
  }
  for (const folder of vscode.workspace.workspaceFolders ?? []) {
    const bin = process.platform === "win32" ? ["Scripts", "infiller.exe"] : ["bin", "infiller"];
    const candidate = path.join(folder.uri.fsPath, ".venv", ...bin);
    if (executable(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

function languages(context: vscode.ExtensionContext): string[] {
  // package.json's activationEvents are generated from the server's languages.
  const events: string[] = context.extension.packageJSON.activationEvents ?? [];
  return events.filter((e) => e.startsWith("onLanguage:")).map((e) => e.slice("onLanguage:".length));
}

async function start(context: vscode.ExtensionContext): Promise<void> {
  const command = serverPath();
  if (!command) {
    void vscode.window.showErrorMessage(
      "infiller: no `infiller` executable on PATH or in the workspace .venv; set infiller.server.path.",
    );
    return;
  }
  const serverOptions: ServerOptions = { command, args: ["serve"] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: documentSelector(context),
    initializationOptions: { [SECTION]: serverSettings() },
    middleware: {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const result = await next(document, position, context, token);
        const items = Array.isArray(result) ? result : result?.items;
        lastShown = items?.length
          ? { uri: document.uri.toString(), version: document.version, position }
          : undefined;
        return result;
      },
      workspace: {
        // The server asks with workspace/configuration when told that settings changed.
        configuration: (params) =>
          params.items.map((item) => (item.section === SECTION ? serverSettings() : null)),
      },
    },
  };
  const starting = new LanguageClient(SECTION, "infiller", serverOptions, clientOptions);
  starting.registerFeature({
    fillClientCapabilities: (capabilities) => {
      capabilities.experimental = { ...(capabilities.experimental ?? {}), [SUGGESTION_UPDATES]: true };
    },
    initialize: () => {},
    getState: () => ({ kind: "static" }),
    clear: () => {},
  });
  starting.onNotification(SUGGESTION_UPDATED, (params: { uri: string }) => {
    // Ask again only where the early part was shown and nothing moved since.
    const editor = vscode.window.activeTextEditor;
    const shown = lastShown;
    if (
      editor &&
      shown &&
      shown.uri === params.uri &&
      editor.document.uri.toString() === params.uri &&
      editor.document.version === shown.version &&
      editor.selection.active.isEqual(shown.position)
    ) {
      void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
    }
  });
  try {
    await starting.start();
  } catch {
    // The language client has already shown why (with "Go to output"). Keeping the failed client
    // would make Show Statistics fail with "Client is not running" instead of saying so.
    return;
  }
  client = starting;
  cursorMoved(context, vscode.window.activeTextEditor);
}

function documentSelector(context: vscode.ExtensionContext): { scheme: string; language: string }[] {
  return languages(context).flatMap((language) => [
    { scheme: "file", language },
    { scheme: "untitled", language },
  ]);
}

/** Tell the running server where the cursor is (in a document of the languages it serves). */
function cursorMoved(context: vscode.ExtensionContext, editor: vscode.TextEditor | undefined): void {
  const running = client;
  const served = editor && vscode.languages.match(documentSelector(context), editor.document) > 0;
  if (!editor || !served || !running?.isRunning()) {
    return;
  }
  const c2p = running.code2ProtocolConverter;
  void running.sendNotification(CURSOR, {
    textDocument: { uri: c2p.asUri(editor.document.uri) },
    position: c2p.asPosition(editor.selection.active),
  });
}

async function showStats(): Promise<void> {
  if (!client?.isRunning()) {
    void vscode.window.showWarningMessage("infiller is not running.");
    return;
  }
  const stats = await client.sendRequest("workspace/executeCommand", {
    command: "infiller.stats",
    arguments: [],
  });
  const doc = await vscode.workspace.openTextDocument({
    language: "json",
    content: JSON.stringify(stats, null, 2),
  });
  await vscode.window.showTextDocument(doc, { preview: true });
}

/** What the code action "Edit selection by instruction…" carries (LSP positions, UTF-16). */
interface EditTarget {
  uri: string;
  version?: number | null;
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
}

/**
 * Edit by instruction: ask what to change, then let the server rewrite and verify the selection
 * (`infiller.editSelection`). It answers with a workspace/applyEdit whose change needs
 * confirmation, which VS Code shows in its refactor preview for the user to apply or discard.
 * From the command palette the target is the active editor's selection.
 */
async function promptEdit(target?: EditTarget): Promise<void> {
  if (!client?.isRunning()) {
    void vscode.window.showWarningMessage("infiller is not running.");
    return;
  }
  if (!target) {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.selection.isEmpty) {
      void vscode.window.showWarningMessage("infiller: select the code to edit first.");
      return;
    }
    const c2p = client.code2ProtocolConverter;
    target = {
      uri: c2p.asUri(editor.document.uri),
      version: editor.document.version,
      range: c2p.asRange(editor.selection),
    };
  }
  const instruction = await vscode.window.showInputBox({
    title: "infiller: edit the selection",
    prompt: "What should change? The rewrite is verified (it parses, related tests still pass) before you see it.",
    placeHolder: "handle None",
  });
  if (!instruction?.trim()) {
    return;
  }
  await client.sendRequest("workspace/executeCommand", {
    command: "infiller.editSelection",
    arguments: [{ ...target, instruction }],
  });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.commands.registerCommand("infiller.showStats", showStats),
    vscode.commands.registerCommand("infiller.promptEdit", promptEdit),
    // Registered once: they follow whichever client is running (a restart replaces it).
    vscode.window.onDidChangeTextEditorSelection((event) => cursorMoved(context, event.textEditor)),
    vscode.window.onDidChangeActiveTextEditor((editor) => cursorMoved(context, editor)),
    vscode.commands.registerCommand("infiller.restart", async () => {
      await client?.stop();
      client = undefined;
      await start(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration(SECTION)) {
        return;
      }
      if (event.affectsConfiguration(`${SECTION}.server`)) {
        await vscode.commands.executeCommand("infiller.restart");
      } else if (client) {
        await client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: { [SECTION]: serverSettings() },
        });
      }
    }),
  );
  await start(context);
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
