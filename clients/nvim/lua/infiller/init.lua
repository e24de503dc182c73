--- infiller for Neovim: starts `infiller serve` for supported filetypes and forwards settings.
---
--- A thin client: the server decides what to suggest, when (debounce) and from where (caches,
--- retrieval). This module only starts it, forwards settings, and wires the ghost text
--- (infiller.inline) and :InfillerStats. Code actions use the standard vim.lsp.buf.code_action().
local defaults = require("infiller.defaults")
local lsp = require("infiller.lsp")

local M = {}

M.NAME = "infiller"

--- The configuration in effect (after setup()).
M.config = nil

local function default_config()
  return {
    -- Command that starts the server: a list, or a function(root_dir) returning one.
    -- nil: `infiller serve` from PATH, else <root>/.venv/bin/infiller.
    cmd = nil,
    -- Extra environment for the server process.
    cmd_env = nil,
    -- Filetypes to attach to (the server's supported languages).
    filetypes = vim.deepcopy(defaults.filetypes),
    -- Files or folders marking the workspace root (the server indexes it); else the file's folder.
    root_markers = {
      ".git", "pyproject.toml", "setup.py", "setup.cfg", "package.json", "tsconfig.json",
      "go.mod", "Cargo.toml", "pom.xml", "build.gradle", "Makefile",
    },
    -- Server settings (camelCase keys, as in the schema): see defaults.lua or :help infiller-settings.
    settings = vim.deepcopy(defaults.settings),
    -- Ask for a suggestion as you type (false: only with keymaps.suggest).
    auto_trigger = true,
    -- Insert-mode keys; false disables one. Each falls back to its previous meaning when no
    -- suggestion is shown.
    keymaps = {
      accept = "<Tab>",
      accept_word = "<M-Right>",
      accept_line = "<M-C-Right>",
      dismiss = "<C-]>",
      suggest = "<M-\\>",
    },
  }
end

local function is_list(t)
  return type(t) == "table" and next(t) ~= nil and vim.islist(t)
end

--- Deep merge of override into a copy of base; lists and vim.NIL are values, not tables to merge.
local function merge(base, override)
  local out = vim.deepcopy(base)
  for k, v in pairs(override) do
    if type(v) == "table" and type(out[k]) == "table" and not is_list(v) and not is_list(out[k]) then
      out[k] = merge(out[k], v)
    else
      out[k] = vim.deepcopy(v)
    end
  end
  return out
end
M._merge = merge

--- The command for a root: the configured one, `infiller` on PATH, or the workspace's .venv.
local function server_cmd(root)
  local cmd = M.config.cmd
  if type(cmd) == "function" then
    return cmd(root)
  elseif cmd then
    return cmd
  end
  if vim.fn.executable("infiller") == 1 then
    return { "infiller", "serve" }
  end
  local venv = vim.fs.joinpath(root, ".venv", "bin", "infiller")
  if vim.fn.executable(venv) == 1 then
    return { venv, "serve" }
  end
  return nil
end

local function root_for(bufnr)
  local root = vim.fs.root(bufnr, M.config.root_markers)
  if root then
    return root
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  return name ~= "" and vim.fs.dirname(name) or vim.uv.cwd()
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument = caps.textDocument or {}
  -- Neovim 0.11 does not announce inline completion: infiller.inline is the client side of it.
  caps.textDocument.inlineCompletion = { dynamicRegistration = false }
  -- We ask again on infiller/suggestionUpdated, so the server may show a pause's first words early.
  caps.experimental = vim.tbl_extend("force", caps.experimental or {}, { infillerSuggestionUpdates = true })
  return caps
end

--- Start (or reuse) the server for a buffer.
function M.attach(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if vim.bo[bufnr].buftype ~= "" then
    return nil
  end
  local root = root_for(bufnr)
  local cmd = server_cmd(root)
  if not cmd then
    vim.notify_once(
      "infiller: no `infiller` executable on PATH or in the workspace .venv; set cmd in setup()",
      vim.log.levels.WARN
    )
    return nil
  end
  return vim.lsp.start({
    name = M.NAME,
    cmd = cmd,
    cmd_env = M.config.cmd_env,
    root_dir = root,
    capabilities = capabilities(),
    init_options = { [M.NAME] = M.config.settings },
    handlers = {
      -- A suggestion shown early is complete: ask for it again where the cursor is now.
      ["infiller/suggestionUpdated"] = function(_, params)
        require("infiller.inline").refresh(params and params.uri)
      end,
    },
    on_init = function(client)
      -- Set here, not in the config: Neovim would send them again in a didChangeConfiguration
      -- right after initialize (and the server would repeat its warnings). Answers the server's
      -- workspace/configuration requests (section "infiller").
      client.settings = { [M.NAME] = M.config.settings }
    end,
  }, { bufnr = bufnr })
end

--- Running infiller clients (for a buffer, when given).
function M.clients(bufnr)
  return vim.lsp.get_clients({ name = M.NAME, bufnr = bufnr })
end

--- Change server settings at run time: merged into the current ones and sent to every client.
function M.update_settings(settings)
  M.config.settings = merge(M.config.settings, settings or {})
  for _, client in ipairs(M.clients()) do
    client.settings = { [M.NAME] = M.config.settings }
    lsp.notify(client, "workspace/didChangeConfiguration", { settings = client.settings })
  end
end

--- Ask the server for its statistics; callback(err, result).
function M.stats(callback, bufnr)
  local client = M.clients(bufnr or vim.api.nvim_get_current_buf())[1] or M.clients()[1]
  if not client then
    callback("infiller is not running", nil)
    return
  end
  lsp.request(client, "workspace/executeCommand", { command = "infiller.stats", arguments = {} },
    function(err, result)
      callback(err and (err.message or tostring(err)) or nil, result)
    end, bufnr or vim.api.nvim_get_current_buf())
end

local function stats_lines(result, prefix, lines)
  local keys = vim.tbl_keys(result)
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = result[k]
    if type(v) == "table" and not vim.islist(v) and next(v) ~= nil then
      table.insert(lines, prefix .. k .. ":")
      stats_lines(v, prefix .. "  ", lines)
    else
      table.insert(lines, ("%s%s: %s"):format(prefix, k, vim.inspect(v)))
    end
  end
  return lines
end

--- :InfillerStats -- the statistics in a floating window.
function M.show_stats()
  M.stats(function(err, result)
    if err then
      vim.notify("infiller: " .. err, vim.log.levels.WARN)
      return
    end
    vim.lsp.util.open_floating_preview(stats_lines(result or {}, "", {}), "yaml",
      { border = "rounded", title = " infiller stats " })
  end)
end

-- Ghost text, for mappings of your own (see :help infiller-keys).
for _, name in ipairs({ "accept", "accept_word", "accept_line", "dismiss", "suggest", "visible", "current" }) do
  M[name] = function(...)
    return require("infiller.inline")[name](...)
  end
end

--- Configure the plugin and start the server for matching buffers. Calling it again updates the
--- configuration (settings are sent to running servers).
function M.setup(opts)
  local first = M.config == nil
  M.config = merge(default_config(), opts or {})
  require("infiller.inline").setup(M.config)
  local group = vim.api.nvim_create_augroup("infiller.attach", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and vim.tbl_contains(M.config.filetypes, vim.bo[buf].filetype) then
      M.attach(buf)
    end
  end
  if not first then
    M.update_settings({})
  end
end

return M
