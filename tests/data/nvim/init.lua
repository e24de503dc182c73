-- Test init for `nvim --headless --clean -u tests/data/nvim/init.lua`: loads the plugin from
-- clients/nvim and records what a user would see, for tests/test_nvim_e2e.py to read through
-- `nvim --server ADDR --remote-expr 'v:lua.T.<fn>()'` (each function returns a JSON string).
--
-- Environment: INFILLER_NVIM_PLUGIN (clients/nvim), INFILLER_NVIM_SETUP (JSON for setup()).
vim.opt.runtimepath:prepend(vim.env.INFILLER_NVIM_PLUGIN)
vim.opt.swapfile = false
vim.opt.shada = ""

local T = {
  messages = {}, -- window/showMessage texts
  shown = {}, -- every suggestion shown: the line on screen at that moment and the ghost text
  max_pending = 0, -- most inlineCompletion requests pending at once for one buffer
  cancels = 0, -- inlineCompletion requests cancelled by the client
  stats = vim.NIL,
}
_G.T = T

local setup = vim.json.decode(vim.env.INFILLER_NVIM_SETUP or "{}", { luanil = { object = true } })
require("infiller").setup(setup)

vim.lsp.handlers["window/showMessage"] = function(_, params)
  table.insert(T.messages, params.message)
end

vim.api.nvim_create_autocmd("User", {
  pattern = "InfillerShown",
  callback = function(args)
    table.insert(T.shown, { line = vim.api.nvim_get_current_line(), text = args.data.text })
  end,
})

vim.api.nvim_create_autocmd("LspRequest", {
  callback = function(args)
    local req = args.data.request
    if req.method ~= "textDocument/inlineCompletion" then
      return
    end
    if req.type == "cancel" then
      T.cancels = T.cancels + 1
    end
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    local pending = 0
    for _, r in pairs(client and client.requests or {}) do
      if r.type == "pending" and r.method == req.method and r.bufnr == req.bufnr then
        pending = pending + 1
      end
    end
    T.max_pending = math.max(T.max_pending, pending)
  end,
})

--- The ghost text as drawn: the extmark's inline text and the lines below it.
local function drawn(buf)
  local ns = require("infiller.inline").ns
  local marks = vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })
  if #marks == 0 then
    return vim.NIL
  end
  local _, row, col, d = unpack(marks[1])
  local parts = {}
  for _, chunk in ipairs(d.virt_text or {}) do
    table.insert(parts, chunk[1])
  end
  local lines = { table.concat(parts) }
  for _, vl in ipairs(d.virt_lines or {}) do
    local line = {}
    for _, chunk in ipairs(vl) do
      table.insert(line, chunk[1])
    end
    table.insert(lines, table.concat(line))
  end
  local out = { row = row, col = col, text = table.concat(lines, "\n"), marks = #marks, pos = d.virt_text_pos }
  if marks[2] then -- the part drawn after text the suggestion replaces (`)` an auto-pairs plugin put)
    local _, _, tail_col, t = unpack(marks[2])
    out.tail, out.tail_col = (t.virt_text or { { "" } })[1][1], tail_col
  end
  return out
end

--- The text of every floating window (e.g. :InfillerStats).
local function floats()
  local out = {}
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(win).relative ~= "" then
      table.insert(out, vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(win), 0, -1, false))
    end
  end
  return out
end

function T.state()
  local buf = vim.api.nvim_get_current_buf()
  local pos = vim.api.nvim_win_get_cursor(0)
  local clients = vim.lsp.get_clients({ name = "infiller", bufnr = buf })
  return vim.json.encode({
    mode = vim.api.nvim_get_mode().mode,
    line = vim.api.nvim_get_current_line(),
    row = pos[1] - 1,
    col = pos[2],
    attached = #clients > 0,
    ghost = drawn(buf),
    pending = require("infiller.inline").pending(buf) or vim.NIL,
    shown = T.shown,
    messages = T.messages,
    max_pending = T.max_pending,
    cancels = T.cancels,
    stats = T.stats,
    floats = floats(),
  })
end

function T.buffer()
  return vim.json.encode(vim.api.nvim_buf_get_lines(0, 0, -1, false))
end

--- Ask for the statistics; the answer lands in T.stats (read it with T.state()).
function T.fetch_stats()
  T.stats = vim.NIL
  require("infiller").stats(function(err, result)
    T.stats = err and { error = err } or result
  end)
  return "null"
end

function T.update_settings(json)
  require("infiller").update_settings(vim.json.decode(json, { luanil = { object = true } }))
  return "null"
end

function T.reset_records()
  T.shown, T.messages, T.max_pending, T.cancels = {}, {}, 0, 0
  return "null"
end
