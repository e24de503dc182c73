-- The Neovim test init (init.lua) plus what the edit-by-instruction test reads: every
-- vim.ui.select prompt with the diff on screen at that moment, answered with T.choice.
dofile(vim.env.INFILLER_NVIM_PLUGIN .. "/../../tests/data/nvim/init.lua")

T.choice = "Apply"
T.selects = {}
T.edited = vim.NIL
T.notes = {} -- vim.notify texts

local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(T.notes, msg)
  return notify(msg, level, opts)
end

vim.ui.select = function(items, opts, on_choice)
  local buf = vim.api.nvim_get_current_buf()
  table.insert(T.selects, {
    prompt = opts.prompt,
    items = items,
    filetype = vim.bo[buf].filetype,
    diff = vim.api.nvim_buf_get_lines(buf, 0, -1, false),
  })
  on_choice(T.choice)
end

vim.api.nvim_create_autocmd("User", {
  pattern = "InfillerEdited",
  callback = function(args)
    T.edited = args.data.applied
  end,
})

function T.edit_state()
  return vim.json.encode({ selects = T.selects, edited = T.edited, messages = T.messages,
    notes = T.notes, windows = #vim.api.nvim_list_wins() })
end

function T.set_choice(choice)
  T.choice = choice
  T.selects, T.edited = {}, vim.NIL
  return "null"
end
