--- Edit by instruction: the server rewrites the selected lines as asked and verifies the result
--- (it parses, the related tests still pass); the diff is shown and applied only on "Apply".
--- Thin: asking for the instruction and showing the diff are the only things done here.
local lsp = require("infiller.lsp")

local M = {}

M.COMMAND = "infiller.editSelection"
M.PROMPT_COMMAND = "infiller.promptEdit"
M.CANCEL_COMMAND = "infiller.cancelActions"

local function client_for(bufnr)
  return vim.lsp.get_clients({ name = "infiller", bufnr = bufnr })[1]
end

--- The diff in a scratch split; returns a function closing it.
local function show_diff(diff)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(diff, "\n", { trimempty = true }))
  vim.bo[buf].filetype = "diff"
  vim.bo[buf].modifiable = false
  vim.cmd("botright split")
  local win = vim.api.nvim_get_current_win()
  vim.api.nvim_win_set_buf(win, buf)
  return function()
    if vim.api.nvim_win_is_valid(win) then
      vim.api.nvim_win_close(win, true)
    end
    if vim.api.nvim_buf_is_valid(buf) then
      vim.api.nvim_buf_delete(buf, { force = true })
    end
  end
end

local function offer(client, bufnr, result)
  local lines = table.concat(result.tried or {}, "\n")
  if not result.edit then
    vim.notify("infiller: " .. (result.summary or "no rewrite") .. (lines ~= "" and "\n" .. lines or ""),
      vim.log.levels.WARN)
    return
  end
  local close = show_diff(result.diff or "")
  vim.ui.select({ "Apply", "Discard" }, { prompt = "infiller: " .. result.summary .. ". Apply?" },
    function(choice)
      close()
      if choice == "Apply" and vim.api.nvim_buf_is_valid(bufnr) then
        vim.lsp.util.apply_workspace_edit(result.edit, client.offset_encoding)
        vim.api.nvim_exec_autocmds("User", { pattern = "InfillerEdited", data = { applied = true } })
      else
        vim.api.nvim_exec_autocmds("User", { pattern = "InfillerEdited", data = { applied = false } })
      end
    end)
end

--- Rewrite lines line1..line2 (1-based, inclusive) of bufnr by instruction (asked when nil).
function M.run(opts)
  local bufnr = opts.bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    vim.notify("infiller is not running for this buffer", vim.log.levels.WARN)
    return
  end
  local function go(instruction)
    if not instruction or instruction:match("^%s*$") then
      return
    end
    -- Whole lines: from the first one's start to the start of the line after the last.
    local args = {
      uri = vim.uri_from_bufnr(bufnr),
      version = vim.lsp.util.buf_versions[bufnr],
      range = {
        start = { line = opts.line1 - 1, character = 0 },
        ["end"] = { line = opts.line2, character = 0 },
      },
      instruction = instruction,
      preview = true,
    }
    vim.notify(("infiller: %s (lines %d-%d)..."):format(instruction, opts.line1, opts.line2))
    lsp.request(client, "workspace/executeCommand", { command = M.COMMAND, arguments = { args } },
      function(err, result)
        if err then
          vim.notify("infiller: " .. (err.message or tostring(err)), vim.log.levels.WARN)
        elseif result and result.cancelled then
          vim.notify("infiller: edit cancelled")
        elseif result and result.error then
          vim.notify("infiller: " .. result.error, vim.log.levels.WARN)
        elseif result then
          offer(client, bufnr, result)
        end
      end, bufnr)
  end
  if opts.instruction and opts.instruction ~= "" then
    go(opts.instruction)
  else
    vim.ui.input({ prompt = "infiller, rewrite the selection: " }, go)
  end
end

--- Cancel the buffer's running actions: an edit, a fix, generated tests (the server stops the
--- model and the sandbox; the edit's own answer then says "edit cancelled").
function M.cancel(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local client = client_for(bufnr)
  if not client then
    vim.notify("infiller is not running for this buffer", vim.log.levels.WARN)
    return
  end
  local args = { uri = vim.uri_from_bufnr(bufnr) }
  lsp.request(client, "workspace/executeCommand", { command = M.CANCEL_COMMAND, arguments = { args } },
    function(err, result)
      if err then
        vim.notify("infiller: " .. (err.message or tostring(err)), vim.log.levels.WARN)
      elseif not (result and result.cancelled and #result.cancelled > 0) then
        vim.notify("infiller: nothing is running for this buffer")
      end
    end, bufnr)
end

--- The code action's client-side command: ask for the instruction, then run.
function M.prompt_command(command, ctx)
  local a = (command.arguments or {})[1] or {}
  local range = a.range or { start = { line = 0 }, ["end"] = { line = 0, character = 0 } }
  local last = range["end"].line
  if range["end"].character == 0 and last > range.start.line then
    last = last - 1
  end
  M.run({ bufnr = ctx.bufnr, line1 = range.start.line + 1, line2 = last + 1 })
end

return M
