-- infiller: user commands. Nothing starts until require("infiller").setup() is called.
if vim.g.loaded_infiller then
  return
end
vim.g.loaded_infiller = true

vim.api.nvim_create_user_command("InfillerStats", function()
  require("infiller").show_stats()
end, { desc = "infiller: show the completion statistics" })

-- Edit by instruction (the code action "Edit selection by instruction…" asks through this too).
vim.api.nvim_create_user_command("InfillerEdit", function(opts)
  require("infiller.edit").run({ line1 = opts.line1, line2 = opts.line2, instruction = opts.args })
end, { range = true, nargs = "*", desc = "infiller: rewrite the selected lines by instruction (verified)" })
vim.api.nvim_create_user_command("InfillerCancel", function()
  require("infiller.edit").cancel()
end, { desc = "infiller: cancel this buffer's running edit, fix or test generation" })
vim.lsp.commands["infiller.promptEdit"] = function(command, ctx)
  require("infiller.edit").prompt_command(command, ctx)
end
