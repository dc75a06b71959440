-- Driven by tests/neovim.rs in a headless Neovim: attaches the Basis plugin to a
-- fixture repository, runs :BasisLocalize into the quickfix list, opens the
-- first entry with <CR> (which records it), runs :checkhealth basis, and writes
-- what it saw to the JSON file named by $BASIS_TEST_RESULT. Exits non-zero on
-- any failure.
local result_path = assert(os.getenv('BASIS_TEST_RESULT'))
local function finish(result, code)
  local f = assert(io.open(result_path, 'w'))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd((code == 0) and 'qa!' or 'cq')
end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(assert(os.getenv('BASIS_NVIM_PLUGIN')))
  require('basis').setup({
    cmd = { assert(os.getenv('BASIS_BIN')), 'lsp' },
    init_options = vim.json.decode(assert(os.getenv('BASIS_INIT_OPTIONS'))),
    localize = { ui = 'quickfix' },
  })
  vim.cmd('filetype on')
  vim.cmd('edit ' .. assert(os.getenv('BASIS_TEST_FILE')))
  local attached = vim.wait(60000, function()
    return require('basis').client(0) ~= nil
  end, 50)
  assert(attached, 'the basis client did not attach')
  local done = nil
  require('basis').localize(assert(os.getenv('BASIS_TEST_ISSUE')), {
    on_done = function(r) done = r end,
  })
  assert(vim.wait(150000, function() return done ~= nil end, 50), 'basis/localize did not answer')
  local items = {}
  for _, it in ipairs(vim.fn.getqflist()) do
    table.insert(items, { filename = vim.api.nvim_buf_get_name(it.bufnr), lnum = it.lnum, text = it.text })
  end
  local client = require('basis').client(0)
  -- <CR> on the first entry of the quickfix window opens and records it.
  assert(vim.bo.buftype == 'quickfix', 'the quickfix window has the focus')
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('<CR>', true, false, true), 'x', false)
  local opened = vim.api.nvim_buf_get_name(0)
  assert(vim.lsp.buf_request_sync(0, 'basis/feedbackFlush', vim.NIL, 30000), 'basis/feedbackFlush')
  vim.cmd('checkhealth basis')
  local health = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  finish({ items = items, client = client.name, suggestionId = done.suggestionId, modelVersion = done.modelVersion,
    opened = opened, health = health }, 0)
end)
if not ok then
  finish({ error = tostring(err) }, 1)
end
