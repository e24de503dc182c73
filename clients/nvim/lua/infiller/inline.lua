--- Ghost text for `textDocument/inlineCompletion` (Neovim 0.11 has no client for it built in).
---
--- One request in flight per buffer: a newer text or cursor cancels the older request
--- ($/cancelRequest), and an answer is shown only while the buffer and cursor are exactly those it
--- was asked for, so a suggestion on screen never belongs to older text. While the user types
--- characters the shown suggestion starts with, the rest stays on screen until the server's answer
--- for the new text replaces it; that is display only (the server's cache answers those requests,
--- and debounce is the server's job too).
local lsp = require("infiller.lsp")

local M = {}

local api = vim.api
local ns = api.nvim_create_namespace("infiller.ghost")
M.ns = ns
M.HL = "InfillerSuggestion"

-- InlineCompletionTriggerKind
local INVOKED, AUTOMATIC = 1, 2

--- bufnr -> { client_id?, request_id?, key?, ghost?, scheduled? }
--- key: "changedtick:row:col" of the last request (the spot its answer is valid for).
--- ghost: the suggestion on screen: { client_id, command?, id?, text, row, col, before,
---        replace_end, after, accepted }; text is what is left to insert at (row, col), replacing
---        the line up to replace_end (whose text after it, `after`, it leaves as it is).
local states = {}
local config = { auto_trigger = true }
local mapped = {} -- lhs we mapped (unmapped on a second setup)
local fallbacks = {} -- previous non-expr callback mappings, called through _fallback(i)

local function state(buf)
  local st = states[buf]
  if not st then
    st = {}
    states[buf] = st
  end
  return st
end

local function client_for(buf)
  for _, client in ipairs(vim.lsp.get_clients({ name = "infiller", bufnr = buf })) do
    if client.server_capabilities and client.server_capabilities.inlineCompletionProvider then
      return client
    end
  end
  return nil
end

local function in_insert()
  return api.nvim_get_mode().mode:sub(1, 1) == "i"
end

--- The spot an answer is valid for: the buffer text (changedtick) and the cursor.
local function cursor_key(buf)
  local pos = api.nvim_win_get_cursor(0)
  return ("%d:%d:%d"):format(api.nvim_buf_get_changedtick(buf), pos[1], pos[2]), pos[1] - 1, pos[2]
end

local function line_at(buf, row)
  return api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ""
end

local function expand_tabs(text, buf)
  return (text:gsub("\t", string.rep(" ", vim.bo[buf].tabstop)))
end

--- After an edit at the ghost: the line still ends with the text after what it replaces (`after`),
--- whether the user typed into it, auto-pairs typed over a closer, or a part was accepted.
local function set_replace_end(g, line)
  g.replace_end = math.max(g.col, #line - #g.after)
end

--- Where the text after the cursor that the ghost replaces (closers an auto-pairs plugin put there,
--- which the suggestion writes itself) sits in the ghost's first line; nil when it replaces none.
local function replaced_at(buf, g)
  if g.replace_end <= g.col then
    return nil
  end
  local replaced = line_at(buf, g.row):sub(g.col + 1, g.replace_end)
  local first = g.text:match("^[^\n]*")
  return first:find(replaced, 1, true), replaced
end

local function render(buf, g)
  api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  local lines = vim.split(g.text, "\n", { plain = true })
  local head, tail = lines[1], nil
  local at, replaced = replaced_at(buf, g)
  if at then -- `a, b` before the `)` already there, ` + 1` after it
    head, tail = lines[1]:sub(1, at - 1), lines[1]:sub(at + #replaced)
  end
  local opts = { virt_text = { { expand_tabs(head, buf), M.HL } }, virt_text_pos = "inline", hl_mode = "combine" }
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      opts.virt_lines[#opts.virt_lines + 1] = { { expand_tabs(lines[i], buf), M.HL } }
    end
  end
  api.nvim_buf_set_extmark(buf, ns, g.row, g.col, opts)
  if tail and tail ~= "" then
    api.nvim_buf_set_extmark(buf, ns, g.row, g.replace_end, {
      virt_text = { { expand_tabs(tail, buf), M.HL } },
      virt_text_pos = "inline",
      hl_mode = "combine",
    })
  end
end

local function clear(buf)
  if api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  end
  local st = states[buf]
  if st then
    st.ghost = nil
  end
end

local function cancel(buf)
  local st = states[buf]
  if st and st.request_id then
    local client = vim.lsp.get_client_by_id(st.client_id)
    if client then
      lsp.cancel_request(client, st.request_id)
    end
    st.request_id = nil
  end
end

--- Keep the ghost while the user types what it starts with; otherwise drop it.
local function follow_typing(buf)
  local g = states[buf] and states[buf].ghost
  if not g then
    return
  end
  local pos = api.nvim_win_get_cursor(0)
  local row, col = pos[1] - 1, pos[2]
  local line = line_at(buf, row)
  if row == g.row and col >= g.col and line:sub(1, g.col) == g.before then
    local typed = line:sub(g.col + 1, col)
    local first = g.text:match("^[^\n]*")
    if typed == "" then
      return
    end
    if #typed < #g.text and #typed <= #first and g.text:sub(1, #typed) == typed then
      g.text = g.text:sub(#typed + 1)
      g.col, g.before = col, line:sub(1, col)
      set_replace_end(g, line)
      render(buf, g)
      return
    end
  end
  clear(buf)
end

local function first_item(result)
  if type(result) ~= "table" then
    return nil
  end
  local items = result.items or result
  return items[1]
end

--- Show an answer for the spot (row, col) where it was asked; false if it has nothing to show.
local function show(buf, client, result, row, col, position)
  local item = first_item(result)
  local text = item and item.insertText
  if type(text) == "table" then -- a StringValue snippet: shown and inserted as plain text
    text = text.value
  end
  if type(text) ~= "string" or text == "" then
    return false
  end
  local line = line_at(buf, row)
  local replace_end = col
  if item.range then
    local s, e = item.range.start, item.range["end"]
    if s.line ~= position.line or e.line ~= position.line then
      return false -- ranges over several lines: not a ghost-text edit
    end
    local scol = lsp.byte_col(line, s.character, client.offset_encoding)
    local ecol = lsp.byte_col(line, e.character, client.offset_encoding)
    local typed = line:sub(scol + 1, col)
    if scol > col or ecol < col or text:sub(1, #typed) ~= typed then
      return false
    end
    text, replace_end = text:sub(#typed + 1), ecol
    if text == "" then
      return false
    end
  end
  local command = item.command
  local g = {
    client_id = client.id,
    command = command,
    id = command and type(command.arguments) == "table" and command.arguments[1] or nil,
    text = text,
    row = row,
    col = col,
    before = line:sub(1, col),
    replace_end = replace_end,
    after = line:sub(replace_end + 1),
    accepted = 0,
  }
  state(buf).ghost = g
  render(buf, g)
  api.nvim_exec_autocmds("User", { pattern = "InfillerShown", modeline = false, data = { buf = buf, text = text } })
  return true
end

--- Ask for a suggestion at the cursor, cancelling the buffer's previous request.
local function request(buf, trigger)
  local client = client_for(buf)
  if not client then
    return
  end
  local st = state(buf)
  cancel(buf)
  local key, row, col = cursor_key(buf)
  st.key = key
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger }
  local id
  local ok, request_id = lsp.request(client, "textDocument/inlineCompletion", params, function(err, result)
    if id ~= nil and st.request_id == id then
      st.request_id = nil
    end
    if err or st.key ~= key or not api.nvim_buf_is_valid(buf) then
      return -- cancelled, failed, or superseded by a newer request
    end
    if api.nvim_get_current_buf() ~= buf or not in_insert() or cursor_key(buf) ~= key then
      return -- the text or cursor moved on: this answer is stale
    end
    if not show(buf, client, result, row, col, params.position) then
      clear(buf) -- nothing for this text: drop a ghost kept from typing along an older one
    end
  end, buf)
  if ok and request_id then
    id = request_id
    st.request_id, st.client_id = request_id, client.id
  end
end

local function update(buf)
  if api.nvim_get_current_buf() ~= buf or not in_insert() then
    return
  end
  local st = state(buf)
  if cursor_key(buf) == st.key then
    return
  end
  if config.auto_trigger or st.ghost then
    request(buf, AUTOMATIC)
  else
    cancel(buf)
    st.key = nil
  end
end

--- On a keystroke or cursor move: fix the display at once, request on the next loop turn (one
--- request for the events of one keystroke, and for keys typed ahead).
local function on_change(buf)
  if api.nvim_get_current_buf() ~= buf or not client_for(buf) then
    return
  end
  follow_typing(buf)
  local st = state(buf)
  if st.scheduled then
    return
  end
  st.scheduled = true
  vim.schedule(function()
    st.scheduled = false
    if api.nvim_buf_is_valid(buf) then
      update(buf)
    end
  end)
end

--- Outside insert mode, where the cursor is: the server reads the prompt for that line while the
--- user looks (it waits for the cursor to rest, and for the keyboard to be quiet, itself).
local function cursor_moved(buf)
  if api.nvim_get_current_buf() ~= buf or in_insert() then
    return
  end
  local client = client_for(buf)
  if client then
    lsp.notify(client, "infiller/cursor", vim.lsp.util.make_position_params(0, client.offset_encoding))
  end
end

local function reset(buf)
  cancel(buf)
  clear(buf)
  if states[buf] then
    states[buf].key = nil
  end
end

-- Public API ------------------------------------------------------------------------------------

--- The server says a suggestion it showed early in `uri` is complete: ask again at the cursor.
--- Only while its early part is still on screen: not after a dismiss, a move, or with a newer request.
function M.refresh(uri)
  local buf = api.nvim_get_current_buf()
  if uri ~= vim.uri_from_bufnr(buf) or not in_insert() or not client_for(buf) then
    return
  end
  local st = state(buf)
  if st.ghost and not st.request_id and cursor_key(buf) == st.key then
    request(buf, AUTOMATIC)
  end
end

--- The suggestion shown in a buffer (default: current), or nil.
function M.current(buf)
  local st = states[buf or api.nvim_get_current_buf()]
  return st and st.ghost and st.ghost.text or nil
end

function M.visible(buf)
  local text = M.current(buf)
  return text ~= nil and text ~= ""
end

--- The id of the buffer's request in flight, or nil.
function M.pending(buf)
  local st = states[buf or api.nvim_get_current_buf()]
  return st and st.request_id or nil
end

local function next_word(text)
  local first = text:match("^[^\n]*")
  if first == "" then
    return text:match("^\n[ \t]*") -- the line break and the next line's indentation
  end
  return first:match("^%s*[%w_\128-\255]+") or first:match("^%s*[^%w_%s\128-\255]+") or first
end

local function next_line(text)
  local first = text:match("^[^\n]*")
  if first ~= "" then
    return first
  end
  return text:match("^\n[^\n]*")
end

--- Accept the suggestion: all of it (default), or "word" / "line". Returns false if none is shown.
function M.accept(part)
  local buf = api.nvim_get_current_buf()
  local st = states[buf]
  local g = st and st.ghost
  if not g or g.text == "" then
    return false
  end
  local text = g.text
  local piece = text
  if part == "word" then
    piece = next_word(text)
  elseif part == "line" then
    piece = next_line(text)
  end
  local full = #piece >= #text
  local lines = vim.split(piece, "\n", { plain = true })
  -- A piece that writes the replaced closers replaces them; one that stops before them inserts.
  local at, replaced = replaced_at(buf, g)
  local through = full or (at ~= nil and at - 1 + #replaced <= #piece)
  cancel(buf)
  api.nvim_buf_set_text(buf, g.row, g.col, g.row, through and g.replace_end or g.col, lines)
  local row = g.row + #lines - 1
  local col = (#lines == 1 and g.col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { row + 1, col })
  local client = vim.lsp.get_client_by_id(g.client_id)
  if full then
    clear(buf)
    if client and g.command then -- infiller.accepted: the server counts it
      lsp.request(client, "workspace/executeCommand",
        { command = g.command.command, arguments = g.command.arguments }, function() end, buf)
    end
    return true
  end
  -- Partly accepted: the rest stays shown at the new cursor until the server's answer replaces it.
  g.accepted = g.accepted + vim.fn.strchars(piece)
  g.text = text:sub(#piece + 1)
  g.row, g.col = row, col
  local line = line_at(buf, row)
  g.before = line:sub(1, col)
  set_replace_end(g, line)
  render(buf, g)
  if client and g.id ~= nil then
    lsp.notify(client, "infiller/didPartiallyAcceptCompletion", { id = g.id, acceptedLength = g.accepted })
  end
  return true
end

function M.accept_word()
  return M.accept("word")
end

function M.accept_line()
  return M.accept("line")
end

--- Hide the suggestion and cancel the request; nothing is asked again until the text or cursor moves.
function M.dismiss()
  local buf = api.nvim_get_current_buf()
  cancel(buf)
  clear(buf)
end

--- Ask now (an explicit request: the server skips its debounce).
function M.suggest()
  local buf = api.nvim_get_current_buf()
  if in_insert() then
    request(buf, INVOKED)
  end
end

function M._fallback(i)
  fallbacks[i]()
end

-- Keys ------------------------------------------------------------------------------------------

--- What lhs did before we mapped it, as keys for an expr mapping to return.
local function fallback_keys(lhs, prev)
  if not prev or vim.tbl_isempty(prev) then
    return lhs
  end
  if prev.callback then
    if prev.expr == 1 then
      return prev.callback()
    end
    table.insert(fallbacks, prev.callback)
    return ("<Cmd>lua require('infiller.inline')._fallback(%d)<CR>"):format(#fallbacks)
  end
  if prev.expr == 1 then
    return api.nvim_eval(prev.rhs)
  end
  return prev.rhs
end

local function map(lhs, action, when, desc)
  if not lhs then
    return
  end
  local prev = vim.fn.maparg(lhs, "i", false, true)
  if prev.desc and prev.desc:find("^infiller") then
    prev = {}
  end
  vim.keymap.set("i", lhs, function()
    if when() then
      return ("<Cmd>lua require('infiller.inline').%s()<CR>"):format(action)
    end
    return fallback_keys(lhs, prev)
  end, { expr = true, silent = true, desc = "infiller: " .. desc })
  table.insert(mapped, lhs)
end

function M.setup(opts)
  config = opts
  api.nvim_set_hl(0, M.HL, { link = "Comment", default = true })
  for _, lhs in ipairs(mapped) do
    pcall(vim.keymap.del, "i", lhs)
  end
  mapped = {}
  local keys = opts.keymaps or {}
  local shown = function()
    return M.visible()
  end
  map(keys.accept, "accept", shown, "accept the suggestion")
  map(keys.accept_word, "accept_word", shown, "accept the next word of the suggestion")
  map(keys.accept_line, "accept_line", shown, "accept the next line of the suggestion")
  map(keys.dismiss, "dismiss", shown, "dismiss the suggestion")
  map(keys.suggest, "suggest", function()
    return client_for(api.nvim_get_current_buf()) ~= nil
  end, "suggest now")

  local group = api.nvim_create_augroup("infiller.inline", { clear = true })
  api.nvim_create_autocmd({ "InsertEnter", "TextChangedI", "TextChangedP", "CursorMovedI" }, {
    group = group,
    callback = function(args)
      on_change(args.buf)
    end,
  })
  api.nvim_create_autocmd({ "CursorMoved", "BufEnter", "LspAttach" }, {
    group = group,
    callback = function(args)
      cursor_moved(args.buf)
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    callback = function(args)
      reset(args.buf)
    end,
  })
  api.nvim_create_autocmd({ "BufUnload" }, {
    group = group,
    callback = function(args)
      reset(args.buf)
      states[args.buf] = nil
    end,
  })
  -- Requests made while the model loaded got nothing: ask again once it is ready.
  api.nvim_create_autocmd("LspProgress", {
    group = group,
    pattern = "end",
    callback = function(args)
      local buf = api.nvim_get_current_buf()
      local client = client_for(buf)
      if client and args.data and args.data.client_id == client.id and config.auto_trigger
        and in_insert() and not M.visible(buf) and not M.pending(buf) then
        state(buf).key = nil
        on_change(buf)
      end
    end,
  })
  api.nvim_create_autocmd("ColorScheme", {
    group = group,
    callback = function()
      api.nvim_set_hl(0, M.HL, { link = "Comment", default = true })
    end,
  })
end

return M
