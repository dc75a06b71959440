-- The shared editor scenario (editors/scenario.json) in a headless Neovim with
-- the Basis plugin, driven by tests/neovim.rs: each step triggers a skill the way
-- a user would (vim.ui.select for localize, the code action or the command for
-- edit, testgen and reproduce, the review's quick fixes), sees its result (the
-- choice list, the diff preview, the test buffer, the diagnostics) and accepts
-- or rejects it with the plugin's own keys. Writes {steps = [{name,
-- suggestionId, ...}]} to $BASIS_TEST_RESULT; exits non-zero on any failure.
-- $BASIS_SCENARIO_STEPS (comma-separated names) runs only those steps.
local result_path = assert(os.getenv('BASIS_TEST_RESULT'))
local function finish(result, code)
  local f = assert(io.open(result_path, 'w'))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd((code == 0) and 'qa!' or 'cq')
end

-- Where the run is, on stderr (the test lets it through).
local function say(...)
  io.stderr:write(('[scenario %.1fs] '):format(vim.uv.hrtime() / 1e9 % 10000) .. table.concat({ ... }, ' ') .. '\n')
end

local messages = {}
vim.notify = function(msg)
  table.insert(messages, msg)
end
local function wait_message(pattern, timeout, from)
  local found = nil
  vim.wait(timeout, function()
    for i = from or 1, #messages do
      if messages[i]:find(pattern) then
        found = messages[i]
        return true
      end
    end
    return false
  end, 50)
  return found
end

local function read_json(path)
  local f = assert(io.open(path))
  local text = f:read('a')
  f:close()
  return vim.json.decode(text)
end

local function buffer_text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), '\n')
end

-- Back to the fixture as committed: files on disk, then every buffer.
local function restore()
  say('restore')
  local r = vim.system({ 'git', 'checkout', '--', '.' }):wait()
  assert(r.code == 0, 'git checkout: ' .. (r.stderr or ''))
  r = vim.system({ 'git', 'clean', '-fdq' }):wait()
  assert(r.code == 0, 'git clean: ' .. (r.stderr or ''))
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    local name = vim.api.nvim_buf_get_name(b)
    if vim.api.nvim_buf_is_loaded(b) and name ~= '' then
      if vim.fn.filereadable(name) == 1 then
        vim.api.nvim_buf_call(b, function()
          vim.cmd('silent edit!')
        end)
      else
        vim.api.nvim_buf_delete(b, { force = true })
      end
    end
  end
  -- A reloaded buffer is attached again (didOpen) before the step's request,
  -- or the server would see the reload as an edit during it.
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(b) and vim.bo[b].filetype == 'python' then
      assert(vim.wait(60000, function()
        return #vim.lsp.get_clients({ name = 'basis', bufnr = b }) > 0
      end, 20), 'the basis client did not attach again')
    end
  end
  vim.lsp.buf_request_sync(0, 'basis/feedbackFlush', vim.NIL, 30000)
end

local basis
local function open(rel)
  vim.cmd('edit ' .. vim.fn.fnameescape(rel))
  assert(vim.wait(60000, function()
    return #vim.lsp.get_clients({ name = 'basis', bufnr = 0 }) > 0
  end, 50), 'the basis client did not attach to ' .. rel)
end

-- Waits for the preview and answers it with the plugin's key in its window.
local function answer_preview(choice, what)
  say('waiting for the preview of the', what)
  local from = #messages + 1
  assert(vim.wait(300000, function()
    return basis.pending ~= nil or wait_message('failed', 0, from) ~= nil
  end, 50) and basis.pending, 'no preview of the ' .. what .. ': ' .. vim.inspect(messages))
  local p = basis.pending
  assert(vim.api.nvim_get_current_win() == p.win, 'the preview window has the focus')
  local shown = vim.api.nvim_buf_get_lines(p.buf, 0, -1, false)
  local keys = basis.config.preview
  vim.api.nvim_feedkeys(choice == 'accept' and keys.accept or keys.reject, 'x', false)
  assert(basis.pending == nil, 'the key answered the preview')
  assert(not vim.api.nvim_win_is_valid(p.win), 'the preview closed')
  return p, shown
end

local function wait_answered(state, what)
  assert(vim.wait(300000, function() return state.answer ~= nil end, 50), what .. ': the server did not answer')
  assert(not state.answer.err, what .. ': ' .. vim.inspect(state.answer.err))
end

local steps = {}

function steps.localize(step, out)
  local offered = nil
  vim.ui.select = function(items, opts, on_choice)
    offered = {}
    for _, item in ipairs(items) do
      table.insert(offered, opts.format_item(item))
    end
    on_choice(step.choice == 'accept' and items[1] or nil, step.choice == 'accept' and 1 or nil)
  end
  local done = nil
  basis.localize(step.query, { on_done = function(result, choice, err) done = { result = result, choice = choice, err = err } end })
  assert(vim.wait(300000, function() return done ~= nil end, 50), 'basis/localize did not answer')
  assert(not done.err, 'basis/localize: ' .. vim.inspect(done.err))
  assert(offered and #offered > 0, 'no locations were offered')
  out.suggestionId = done.result.suggestionId
  out.offered = offered
  if step.choice == 'accept' then
    local want = vim.uri_to_fname(done.choice.uri)
    assert(vim.api.nvim_buf_get_name(0) == want, 'the chosen location is open: ' .. want)
    out.opened = vim.fn.fnamemodify(want, ':.')
  end
end

function steps.edit(step, out)
  open(step.file)
  local before = buffer_text(0)
  local state = {}
  basis.last_partial = nil
  local first, last = step.range.start.line + 1, step.range['end'].line
  if step.choice == 'accept' then
    -- Through the code action on the selection, answering its prompt.
    vim.ui.input = function(_, on_confirm) on_confirm(step.instruction) end
    vim.api.nvim_win_set_cursor(0, { first, 0 })
    vim.lsp.buf.code_action({
      range = { start = { first, 0 }, ['end'] = { step.range['end'].line + 1, 0 } },
      filter = function(a) return a.title == 'Basis: edit…' end,
      apply = true,
    })
  else
    basis.edit(step.instruction, first, last, nil, function(err, result) state.answer = { err = err, result = result } end)
  end
  local p, shown = answer_preview(step.choice, 'edit')
  out.suggestionId = p.id
  out.preview = shown
  -- The replacement was drawn while the model wrote it (a diff of its lines so far).
  out.partialLines = basis.last_partial and #basis.last_partial.lines or 0
  if step.choice == 'accept' then
    assert(vim.wait(60000, function() return buffer_text(0) ~= before end, 50), 'the accepted edit was not applied')
    assert(buffer_text(0) == table.concat(p.files[1].new, '\n'), 'the buffer holds what the preview showed')
  else
    wait_answered(state, 'basis.reject')
    assert(buffer_text(0) == before, 'a rejected edit changes nothing')
  end
end

function steps.testgen(step, out)
  open(step.file)
  vim.api.nvim_win_set_cursor(0, { step.position.line + 1, step.position.character })
  local done, state = nil, {}
  local from = #messages + 1
  basis.testgen(function(err, result) done = { err = err, result = result } end,
    function(err, result) state.answer = { err = err, result = result } end)
  assert(vim.wait(300000, function() return done ~= nil end, 50), 'basis.testgen did not answer')
  assert(not done.err, 'testgen: ' .. vim.inspect(done.err))
  local p, shown = answer_preview(step.choice, 'tests')
  out.suggestionId = p.id
  out.preview = shown
  out.testFile = done.result.testFile
  wait_answered(state, 'the answer to the preview')
  local fname = vim.uri_to_fname(done.result.testFile)
  if step.choice == 'accept' then
    assert(vim.wait(60000, function() return vim.fn.bufnr(fname) ~= -1 end, 50), 'no buffer for the test file')
    out.testBufferLines = #vim.api.nvim_buf_get_lines(vim.fn.bufnr(fname), 0, -1, false)
    out.message = wait_message('Basis: t', 300000, from)
    assert(out.message, 'the sandbox run of the tests said nothing')
  else
    assert(vim.fn.filereadable(fname) == 0, 'a rejected test file is not written')
  end
end

function steps.reproduce(step, out)
  local done, state = nil, {}
  basis.reproduce(step.issue, function(err, result) done = { err = err, result = result } end,
    function(err, result) state.answer = { err = err, result = result } end)
  say('waiting for basis.reproduce')
  assert(vim.wait(300000, function() return done ~= nil end, 50), 'basis.reproduce did not answer')
  assert(not done.err, 'reproduce: ' .. vim.inspect(done.err))
  out.reproduced = done.result.reproduced
  out.message = done.result.message
  local p, shown = answer_preview(step.choice, 'reproduction')
  out.suggestionId = p.id
  out.preview = shown
  wait_answered(state, 'the answer to the preview')
  if step.choice == 'accept' then
    local fname = vim.uri_to_fname(done.result.testFile)
    assert(vim.wait(60000, function() return vim.fn.bufnr(fname) ~= -1 end, 50), 'no buffer for the reproduction test')
  end
end

function steps.review(step, out)
  open(step.file)
  local bufnr = vim.api.nvim_get_current_buf()
  vim.api.nvim_buf_set_lines(bufnr, step.change.line, step.change.line + 1, false, { step.change.text })
  local done = nil
  basis.review(step.intent, function(err, result) done = { err = err, result = result } end)
  assert(vim.wait(300000, function() return done ~= nil end, 50), 'basis.review did not answer')
  assert(not done.err, 'review: ' .. vim.inspect(done.err))
  out.suggestionId = done.result.suggestionId
  out.verdict = done.result.verdict
  out.comments = #done.result.comments
  local ours = vim.tbl_filter(function(d) return d.source == 'basis' end, vim.diagnostic.get(bufnr))
  out.diagnostics = #ours
  out.message = wait_message('Basis review:', 10000)
  assert(out.message, 'the verdict was not shown')
  -- The comments' quick fixes are the server's commands; the verdict is judged
  -- with the plugin's command.
  vim.cmd('BasisVerdict ' .. (step.choice == 'accept' and 'agree' or 'disagree'))
end

local ok, err = pcall(function()
  vim.opt.runtimepath:append(assert(os.getenv('BASIS_NVIM_PLUGIN')))
  basis = require('basis')
  local scenario = read_json(assert(os.getenv('BASIS_SCENARIO')))
  local only = os.getenv('BASIS_SCENARIO_STEPS')
  basis.setup({
    cmd = { assert(os.getenv('BASIS_BIN')), 'lsp' },
    init_options = vim.json.decode(assert(os.getenv('BASIS_INIT_OPTIONS'))),
    offset_encoding = os.getenv('BASIS_OFFSET_ENCODING'),
  })
  vim.cmd('filetype on')
  open(scenario.steps[1].file or 'shop/pricing.py')
  local client = basis.client(0)
  local result = { client = client.name, offsetEncoding = client.offset_encoding, steps = {} }
  for _, step in ipairs(scenario.steps) do
    if not only or vim.tbl_contains(vim.split(only, ','), step.name) then
      local out = { name = step.name, skill = step.skill, choice = step.choice }
      restore()
      say('step', step.name)
      local started = vim.uv.hrtime()
      local step_ok, step_err = pcall(steps[step.skill], step, out)
      out.seconds = (vim.uv.hrtime() - started) / 1e9
      if not step_ok then
        out.error = tostring(step_err)
        table.insert(result.steps, out)
        result.error = step.name .. ': ' .. out.error
        result.messages = messages
        finish(result, 1)
        return
      end
      table.insert(result.steps, out)
      -- What is done so far, for a run that does not finish.
      local f = assert(io.open(result_path, 'w'))
      f:write(vim.json.encode(vim.tbl_extend('force', result, { messages = messages, partial = true })))
      f:close()
    end
  end
  assert(vim.lsp.buf_request_sync(0, 'basis/feedbackFlush', vim.NIL, 30000), 'basis/feedbackFlush')
  result.messages = messages
  finish(result, 0)
end)
if not ok then
  finish({ error = tostring(err), messages = messages }, 1)
end
