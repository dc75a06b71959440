-- Driven by tests/neovim.rs in a headless Neovim: attaches the Basis plugin to a
-- copy of the Python fixture repository (a git repository) and runs edit (through
-- the code action, answering its prompt), testgen, reproduce and review against
-- `basis lsp`, writing what each did to $BASIS_TEST_RESULT. Exits non-zero on
-- any failure.
local result_path = assert(os.getenv('BASIS_TEST_RESULT'))
local function finish(result, code)
  local f = assert(io.open(result_path, 'w'))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd((code == 0) and 'qa!' or 'cq')
end

local messages = {}
vim.notify = function(msg, level)
  table.insert(messages, msg)
end
local function wait_message(pattern, timeout)
  local found = nil
  vim.wait(timeout, function()
    for _, m in ipairs(messages) do
      if m:find(pattern) then
        found = m
        return true
      end
    end
    return false
  end, 50)
  return found
end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(assert(os.getenv('BASIS_NVIM_PLUGIN')))
  local basis = require('basis')
  basis.setup({
    cmd = { assert(os.getenv('BASIS_BIN')), 'lsp' },
    init_options = vim.json.decode(assert(os.getenv('BASIS_INIT_OPTIONS'))),
  })
  vim.cmd('filetype on')
  vim.cmd('edit shop/pricing.py')
  assert(vim.wait(60000, function() return basis.client(0) ~= nil end, 50), 'the basis client did not attach')
  local client = basis.client(0)
  local out = { client = client.name }
  local before = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')

  -- Edit, through the code action on a selection; the prompt is answered.
  vim.ui.input = function(_, on_confirm)
    on_confirm('give the discount from BULK_QUANTITY items on')
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(0) },
    range = { start = { line = 24, character = 0 }, ['end'] = { line = 26, character = 0 } },
    context = { diagnostics = {} },
  }
  local resp = vim.lsp.buf_request_sync(0, 'textDocument/codeAction', params, 30000)
  local titles = {}
  local edit_action = nil
  for _, r in pairs(resp or {}) do
    for _, a in ipairs(r.result or {}) do
      table.insert(titles, a.title)
      if a.command and a.command.command == 'basis.edit' then
        edit_action = a
      end
    end
  end
  out.code_actions = titles
  assert(edit_action, 'no edit code action among ' .. vim.inspect(titles))
  local sent = false
  local orig = vim.lsp.handlers['workspace/applyEdit']
  vim.lsp.handlers['workspace/applyEdit'] = function(e, r, ctx, c)
    sent = true
    return orig(e, r, ctx, c)
  end
  vim.lsp.commands['basis.edit'](edit_action.command, { client_id = client.id, bufnr = 0 })
  local edit_done = vim.wait(150000, function()
    return sent or wait_message('edit failed', 0) ~= nil
  end, 50)
  assert(edit_done, 'the edit did not come back')
  vim.wait(2000, function() return false end, 50)
  local after = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  out.edit = { applied = sent, changed = after ~= before, error = wait_message('edit failed', 0) }
  -- Back to the original text for the skills below.
  vim.api.nvim_buf_set_lines(0, 0, -1, false, vim.split(before, '\n'))

  -- Tests for the function under the cursor (clamp_quantity, line 15).
  vim.api.nvim_win_set_cursor(0, { 15, 4 })
  local tg = nil
  basis.testgen(function(e, r) tg = { err = e, result = r } end)
  assert(vim.wait(200000, function() return tg ~= nil end, 50), 'basis.testgen did not answer')
  out.testgen = { error = tg.err and tg.err.message, testFile = tg.result and tg.result.testFile }
  if tg.result then
    out.testgen.message = wait_message('Basis: t', 200000)
    local tbuf = vim.fn.bufnr(vim.uri_to_fname(tg.result.testFile))
    out.testgen.buffer_lines = tbuf ~= -1 and #vim.api.nvim_buf_get_lines(tbuf, 0, -1, false) or 0
  end

  -- A reproduction of the known bug.
  local rp = nil
  basis.reproduce(assert(os.getenv('BASIS_TEST_ISSUE')), function(e, r) rp = { err = e, result = r } end)
  assert(vim.wait(200000, function() return rp ~= nil end, 50), 'basis.reproduce did not answer')
  out.reproduce = { error = rp.err and rp.err.message }
  if rp.result then
    out.reproduce.reproduced = rp.result.reproduced
    out.reproduce.message = rp.result.message
    out.reproduce.testFile = rp.result.testFile
  end

  -- Review of an unsaved change.
  vim.cmd('buffer ' .. vim.fn.bufnr('shop/pricing.py'))
  vim.api.nvim_buf_set_lines(0, 24, 25, false, { '    if quantity >= BULK_QUANTITY:' })
  local rv = nil
  basis.review('Give the bulk discount from ten items on', function(e, r) rv = { err = e, result = r } end)
  assert(vim.wait(200000, function() return rv ~= nil end, 50), 'basis.review did not answer')
  assert(not rv.err, 'review failed: ' .. vim.inspect(rv.err))
  vim.wait(1000, function() return false end, 50)
  local diags = vim.diagnostic.get(0, {})
  local ours = 0
  for _, d in ipairs(diags) do
    if d.source == 'basis' then
      ours = ours + 1
    end
  end
  out.review = { verdict = rv.result.verdict, comments = #rv.result.comments, diagnostics = ours, message = wait_message('Basis review:', 5000) }
  out.messages = messages
  finish(out, 0)
end)
if not ok then
  finish({ error = tostring(err), messages = messages }, 1)
end
